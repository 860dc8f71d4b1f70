//! Phone numbers as the channels keep them: parsed and validated by `phonenumber`
//! (libphonenumber's metadata), normalised to E.164.

pub use phonenumber::country::Id as Region;

/// `raw` in E.164 (`+442079460018`), or why it is not a valid number; `region` reads
/// national forms (none: only international ones).
pub fn e164(raw: &str, region: Option<Region>) -> Result<String, String> {
    let number = phonenumber::parse(region, raw.trim()).map_err(|e| format!("{raw:?} is not a phone number: {e}"))?;
    if !phonenumber::is_valid(&number) {
        return Err(format!("{raw:?} is not a valid phone number (international form: +<country code> <number>)"));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}
