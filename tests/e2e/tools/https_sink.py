"""An HTTPS server that records every POST (path, authorization header, size) as a JSON line.

The OTLP-over-https test points Switchboard's trace exporter here, with a test CA.
Usage: https_sink.py CERT KEY PORT_FILE OUT_FILE
"""
import http.server
import json
import ssl
import sys

cert, key, port_file, out = sys.argv[1:5]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "authorization": self.headers.get("authorization"), "bytes": len(body)}) + "\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
