"""The docs stay honest: every relative link in README.md, docs/ and corpora/README.md
resolves (to a file, and a #anchor to one of its headings as GitHub slugs them); the option
table of docs/cli.md lists exactly the options of `charrnn train`, with their defaults; and
every `charrnn ...` command in a bash block of those pages parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from charrnn.cli import build_parser
from charrnn.config import DEFAULT_MINUTES, LONG_BUDGET, TrainConfig

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "corpora/README.md"]
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose_lines(text: str, blank_code: bool = True) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked (or kept)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "``", line) if blank_code else line)
    return lines


def code_blocks(text: str, language: str) -> list[list[str]]:
    """The lines of each fenced block opened with ```language."""
    blocks, current = [], None
    for line in text.splitlines():
        if current is None and line.strip() == f"```{language}":
            current = []
        elif current is not None and FENCE.match(line.strip()):
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text lower-cased, punctuation dropped
    (letters, digits, marks, '_' and '-' stay), spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, the repeats numbered -1, -2, ... as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8"), blank_code=False):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m is None:
            continue
        slug = github_slug(m[1])
        count = seen.get(slug, 0)
        found.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for line in prose_lines(page.read_text(encoding="utf-8"))
        for target in LINK.findall(line)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def test_the_slugs_are_githubs():
    assert github_slug("`charrnn train [FILE ...]`") == "charrnn-train-file-"
    assert github_slug("Fine-tuning: `charrnn train FILE... --init-from RUN`") == (
        "fine-tuning-charrnn-train-file---init-from-run"
    )
    assert github_slug("`charrnn corpora`, `charrnn corpora fetch NAME`") == (
        "charrnn-corpora-charrnn-corpora-fetch-name"
    )
    assert github_slug("Text quality per minute (2026)") == "text-quality-per-minute-2026"


def test_the_link_finder_sees_links_and_images_but_not_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "See [a](a.md#x) and ![b](b.png), [c](https://e.org).\n`[d](d.md)`\n```\n[e](e.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["a.md#x", "b.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no {resolved.relative_to(REPO.parent)}")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == []


# ---- docs/cli.md's table of `charrnn train` options --------------------------------------------


def train_parser():
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return commands.choices["train"]


def documented_train_options() -> dict[str, str]:
    """Each option of the table under docs/cli.md's `charrnn train` heading: its default cell."""
    text = (REPO / "docs/cli.md").read_text(encoding="utf-8")
    section = text.split("## `charrnn train [FILE ...]`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `--") and len(cells) >= 3:
            for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", cells[0]):
                rows[flag] = cells[1]
    return rows


def test_the_cli_table_lists_exactly_the_train_options():
    flags = {s for a in train_parser()._actions for s in a.option_strings if s.startswith("--")}
    assert set(documented_train_options()) == flags - {"--help"}


def expected_default(flag: str):
    """What `charrnn train` takes when the option is not given (before the budget's model)."""
    name = flag[2:].replace("-", "_")
    if name in TrainConfig.options():
        return getattr(TrainConfig(), name)
    return next(a.default for a in train_parser()._actions if flag in a.option_strings)


def test_the_cli_table_gives_each_default():
    wrong = {}
    for flag, cell in documented_train_options().items():
        default, shown = expected_default(flag), cell.split(" (")[0]
        if flag in ("--steps", "--minutes"):
            ok = shown == f"{DEFAULT_MINUTES:g} minutes"
        elif default is None or isinstance(default, bool):
            ok = not re.fullmatch(r"[\d.,e+-]+", shown)  # words saying what happens instead
        elif isinstance(default, str):
            ok = shown == default
        else:
            ok = float(shown.replace(",", "")) == default
        if not ok:
            wrong[flag] = (cell, default)
    assert wrong == {}


def test_the_cli_table_gives_the_lstms_settings_where_they_differ():
    """A default marked "(X)*" is the 2-layer LSTM's setting X, and every LSTM setting is marked."""
    marked = {}
    for flag, cell in documented_train_options().items():
        m = re.search(r"\((.+)\)\*$", cell)
        if m:
            marked[flag[2:].replace("-", "_")] = m[1]
    assert set(marked) == set(LONG_BUDGET)
    for name, shown in marked.items():
        value = LONG_BUDGET[name]
        assert (shown == value) if isinstance(value, str) else float(shown) == value, name


# ---- every command shown parses ---------------------------------------------------------------


SHELL_WORDS = {">", ">>", "<", "|", "2>", "2>&1"}  # redirections and pipes after a command


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for every `charrnn ...` command in the bash blocks of the pages."""
    found = []
    for page in PAGES:
        for block in code_blocks(page.read_text(encoding="utf-8"), "bash"):
            for line in block:
                for part in line.split("&&"):
                    words = shlex.split(part, comments=True)
                    shell = [i for i, w in enumerate(words) if w in SHELL_WORDS]
                    words = words[: shell[0]] if shell else words  # the command, not its pipes
                    if words[:1] == ["charrnn"]:
                        found.append((page.relative_to(REPO).as_posix(), shlex.join(words)))
    return found


COMMANDS = shown_commands()


def test_the_readme_shows_the_quick_start_and_tour_commands():
    readme = [command for page, command in COMMANDS if page == "README.md"]
    assert "charrnn train" in readme and "charrnn sample runs/latest" in readme
    assert len(readme) >= 15


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_every_command_shown_parses(page, command, capsys):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit:
        pytest.fail(f"{page}: {command}: {capsys.readouterr().err.strip()}")
