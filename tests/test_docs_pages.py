"""The README and the pages under docs/ stay short, start with the two commands CI
runs, and link only to files and headings that exist."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 150


def _pages() -> list[Path]:
    """README, docs/ and every other committed Markdown page (model cards, SEARCH.md)."""
    try:
        tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    except OSError:  # no git: a copy of the tree without its history
        tracked = []
    pages = {ROOT / name for name in tracked} | {README, *(ROOT / "docs").glob("*.md")}
    return sorted(page for page in pages if page.exists())


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, whose brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_anchor(heading) for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _links(page: Path) -> list[str]:
    return re.findall(r"\]\(<?([^)<>\s]+)>?\)", _prose(page.read_text()))


def test_the_links_checker_sees_a_broken_file_and_a_broken_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page's title (`x.py`)\n[ok](#a-pages-title-xpy) [gone](missing.md) [no](#nowhere) `[not](a-link.md)`\n")
    assert _links(page) == ["#a-pages-title-xpy", "missing.md", "#nowhere"]
    assert _anchors(page) == {"a-pages-title-xpy"}


def test_every_relative_link_of_the_readme_and_docs_resolves():
    broken = []
    for page in _pages():
        for link in _links(page):
            if re.match(r"[a-z]+:", link):  # https:, mailto:
                continue
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_reads_in_five_minutes():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/ (at most {MAX_README_LINES})"


def test_the_readme_opens_with_the_demo_and_exactly_the_test_command_ci_runs():
    first_block = re.search(r"^```bash\n(.*?)^```", README.read_text(), flags=re.M | re.S).group(1).splitlines()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    commands = [line for line in first_block if line and not line.startswith("#")]
    assert commands[0].endswith("submit_training_job.py --preset demo")
    assert commands[1] == ci_command
