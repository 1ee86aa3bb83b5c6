"""docs/reading-guide.md walks the code in order; every `file.py: Name.attr` it names must exist (imported and
looked up), its stops come in the promised order, and the pictures it shows are in the repository."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "reading-guide.md"
NAME = re.compile(r"`((?:\w+/)*\w+\.py): ([\w.]+)`")
STOPS = ["Tokenizer", "Embeddings", "Attention", "The layer", "The encoder", "Heads", "Losses", "Data",
         "The training loop", "What pretraining changed"]


def named_objects(text: str) -> list[tuple[str, str]]:
    return NAME.findall(text)


def test_every_named_file_and_function_exists():
    names = named_objects(GUIDE.read_text(encoding="utf-8"))
    assert len(names) >= 40, f"the guide should name the code it walks through; found {len(names)} names"
    missing = []
    for path, qualified in names:
        module_name = "minibert." + path.removesuffix(".py").replace("/", ".")
        try:
            obj = importlib.import_module(module_name)
            for part in qualified.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            missing.append(f"{path}: {qualified} ({type(e).__name__}: {e})")
    assert not missing, "the reading guide names code that does not exist:\n" + "\n".join(missing)


def test_stops_come_in_reading_order_each_with_file_paper_and_a_try():
    text = GUIDE.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    numbered = [s for s in sections if re.match(r"\d+\. ", s)]
    titles = [re.match(r"\d+\. ([^:\n]+)", s).group(1) for s in numbered]
    assert titles == STOPS, f"stops out of order: {titles}"
    for number, section in enumerate(numbered, 1):
        assert section.startswith(f"{number}. "), f"stop {number} is misnumbered"
        for field in ("- Read:", "- Paper:", "- Try:"):
            assert field in section, f"stop {number} ({titles[number - 1]}) has no '{field}' line"
        assert named_objects(section), f"stop {number} names no file and function"


def test_pictures_are_in_the_repository():
    text = GUIDE.read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert pictures, "the guide should show the explorer"
    for picture in pictures:
        path = GUIDE.parent / picture
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{picture} is not a PNG file"


def test_readme_links_the_guide_on_its_first_screen():
    readme = (GUIDE.parent.parent / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(readme.splitlines()[:25])
    assert "docs/reading-guide.md" in first_screen, "the README's first screen should link the reading guide"
