"""The languages of the real targets, with what scores are aggregated by: family and script.

Families follow the XTREME-R paper's grouping (family/genus for Indo-European and Afro-Asiatic);
scripts are ISO 15924 codes.
"""

from __future__ import annotations

from xlt_search.tasks.base import Language

_IE = "Indo-European"

LANGUAGES: tuple[Language, ...] = (
    Language("af", "Afrikaans", f"{_IE}/Germanic", "Latn"),
    Language("ar", "Arabic", "Afro-Asiatic/Semitic", "Arab"),
    Language("az", "Azerbaijani", "Turkic", "Latn"),
    Language("bg", "Bulgarian", f"{_IE}/Slavic", "Cyrl"),
    Language("bn", "Bengali", f"{_IE}/Indo-Aryan", "Beng"),
    Language("de", "German", f"{_IE}/Germanic", "Latn"),
    Language("el", "Greek", f"{_IE}/Greek", "Grek"),
    Language("en", "English", f"{_IE}/Germanic", "Latn"),
    Language("es", "Spanish", f"{_IE}/Romance", "Latn"),
    Language("et", "Estonian", "Uralic", "Latn"),
    Language("eu", "Basque", "Basque", "Latn"),
    Language("fa", "Persian", f"{_IE}/Iranian", "Arab"),
    Language("fi", "Finnish", "Uralic", "Latn"),
    Language("fr", "French", f"{_IE}/Romance", "Latn"),
    Language("gu", "Gujarati", f"{_IE}/Indo-Aryan", "Gujr"),
    Language("he", "Hebrew", "Afro-Asiatic/Semitic", "Hebr"),
    Language("hi", "Hindi", f"{_IE}/Indo-Aryan", "Deva"),
    Language("ht", "Haitian Creole", "Creole", "Latn"),
    Language("hu", "Hungarian", "Uralic", "Latn"),
    Language("id", "Indonesian", "Austronesian", "Latn"),
    Language("it", "Italian", f"{_IE}/Romance", "Latn"),
    Language("ja", "Japanese", "Japonic", "Jpan"),
    Language("jv", "Javanese", "Austronesian", "Latn"),
    Language("ka", "Georgian", "Kartvelian", "Geor"),
    Language("kk", "Kazakh", "Turkic", "Cyrl"),
    Language("ko", "Korean", "Koreanic", "Kore"),
    Language("lt", "Lithuanian", f"{_IE}/Baltic", "Latn"),
    Language("ml", "Malayalam", "Dravidian", "Mlym"),
    Language("mr", "Marathi", f"{_IE}/Indo-Aryan", "Deva"),
    Language("ms", "Malay", "Austronesian", "Latn"),
    Language("my", "Burmese", "Sino-Tibetan", "Mymr"),
    Language("nl", "Dutch", f"{_IE}/Germanic", "Latn"),
    Language("pa", "Punjabi", f"{_IE}/Indo-Aryan", "Guru"),
    Language("pl", "Polish", f"{_IE}/Slavic", "Latn"),
    Language("pt", "Portuguese", f"{_IE}/Romance", "Latn"),
    Language("qu", "Quechua", "Quechuan", "Latn"),
    Language("ro", "Romanian", f"{_IE}/Romance", "Latn"),
    Language("ru", "Russian", f"{_IE}/Slavic", "Cyrl"),
    Language("sw", "Swahili", "Niger-Congo", "Latn"),
    Language("ta", "Tamil", "Dravidian", "Taml"),
    Language("te", "Telugu", "Dravidian", "Telu"),
    Language("th", "Thai", "Kra-Dai", "Thai"),
    Language("tl", "Tagalog", "Austronesian", "Latn"),
    Language("tr", "Turkish", "Turkic", "Latn"),
    Language("uk", "Ukrainian", f"{_IE}/Slavic", "Cyrl"),
    Language("ur", "Urdu", f"{_IE}/Indo-Aryan", "Arab"),
    Language("vi", "Vietnamese", "Austroasiatic", "Latn"),
    Language("wo", "Wolof", "Niger-Congo", "Latn"),
    Language("yo", "Yoruba", "Niger-Congo", "Latn"),
    Language("zh", "Chinese", "Sino-Tibetan", "Hani"),
)
