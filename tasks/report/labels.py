"""Display names shared by the figures and the dataset card."""

from __future__ import annotations

from collections.abc import Iterable

from tv100.tasks.train.config import RECIPES

#: Display names of ISO 3166 codes (the paper's labels for its five countries).
COUNTRY_NAMES = {
    "CN": "China",
    "JP": "Japan",
    "KR": "Korea",
    "TH": "Thailand",
    "US": "USA",
    "TW": "Taiwan",
    "HK": "Hong Kong",
    "GB": "UK",
    "IN": "India",
    "FR": "France",
    "DE": "Germany",
    "ES": "Spain",
    "IT": "Italy",
    "BR": "Brazil",
    "MX": "Mexico",
    "CA": "Canada",
    "AU": "Australia",
    "PH": "Philippines",
    "ID": "Indonesia",
    "VN": "Vietnam",
    "TR": "Turkey",
    "RU": "Russia",
    "SE": "Sweden",
    "NO": "Norway",
    "DK": "Denmark",
    "NL": "Netherlands",
    "BE": "Belgium",
    "PL": "Poland",
    "AR": "Argentina",
    "CO": "Colombia",
    "NG": "Nigeria",
    "ZA": "South Africa",
    "EG": "Egypt",
    "IL": "Israel",
    "SG": "Singapore",
    "MY": "Malaysia",
    "unknown": "Unknown",
}
RECIPE_LABELS = {
    "zeroshot": "Zero-Shot",
    "linear": "Linear probe",
    "finetune": "Fine-tuned",
    "wiseft": "WiSE-FT",
}


def recipe_order(recipes: Iterable[str]) -> list[str]:
    """The distinct `recipes` in the train stage's `RECIPES` order, unknown ones last (sorted)."""
    given = set(recipes)
    known = [r for r in RECIPES if r in given]
    return known + sorted(given - set(known))
