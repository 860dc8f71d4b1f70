"""A real SMTP server (aiosmtpd) for the e-mail tests.

Usage: smtp_sink.py HOST PORT DIR
Stores each message it accepts as DIR/NNNNN.eml (the bytes as received) next to
DIR/NNNNN.json (the envelope), and refuses recipients whose local part starts with
"reject" with a 550, so that tests can meet a server that refuses mail.
Prints "ready" once it listens.
"""
import json
import os
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable: " + address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            base = os.path.join(self.directory, "%05d" % self.count)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".tmp", base + ".eml")
        return "250 2.0.0 stored as %05d" % self.count


def main():
    host, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Sink(directory), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
