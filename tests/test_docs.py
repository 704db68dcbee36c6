"""The documentation stays true: the generated pages (tools/docs_pages.py) list every config
group, option and top-level key of configs/ and every registered component, and every command
of the README and docs/ that finishes in seconds still works.

- Every ``train.py`` / ``finetune.py`` command line of a shell block composes, in this process
  with Hydra's compose API (what ``--cfg job`` prints, without starting a process each).
- Every command with ``--cfg job`` or ``--help`` (the entry points, ``python -m simclr....``,
  ``bench/*.py``) runs as typed, each in a process of its own, and must exit 0.

Nothing here is listed by hand: the expected names come from configs/ and the registries, the
commands from the Markdown.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import pkgutil
import re
import shlex
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import CONFIG_DIR, ROOT, finish, start_python

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ENTRY_POINTS = {"train.py": "pretrain", "finetune.py": "finetune"}
# A config group whose options need a Hydra plugin (an extra) to compose.
PLUGIN_OF_GROUP = {
    "hparams_search": "hydra_plugins.hydra_optuna_sweeper",
    "hydra/launcher": "hydra_plugins.hydra_submitit_launcher",
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "tools" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(markdown: str) -> dict[str, str]:
    """``## heading`` -> the text below it, up to the next ``##``."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def _row_names(section: str) -> set[str]:
    """The names in backticks that open the rows of the tables of ``section``."""
    return set(re.findall(r"^\|(?: <span[^>]*></span>)? ?`([^`]+)`", section, flags=re.MULTILINE))


# --- the generated pages -----------------------------------------------------------------------


def test_the_config_page_lists_every_group_option_and_top_level_key():
    sections = _sections(_load_generator().configs_page())
    files = sorted(CONFIG_DIR.rglob("*.yaml"))
    groups: dict[str, set[str]] = {}
    for path in files:
        group = path.parent.relative_to(CONFIG_DIR).as_posix()
        if group != ".":
            groups.setdefault(group, set()).add(path.stem)
    assert "data/augment" in groups and "hydra/launcher" in groups  # nested groups too
    for group, options in groups.items():
        section = next((b for h, b in sections.items() if h.startswith(f"`{group}`")), None)
        assert section is not None, f"no section for config group {group}"
        assert _row_names(section) == options, group
    for path in files:
        if path.parent == CONFIG_DIR:
            keys = set(yaml.safe_load(path.read_text())) - {"defaults"}
            section = sections[f"Top-level keys of `{path.name}`"]
            assert _row_names(section) == keys, path.name


def _registries():
    """Every module-level Registry of the package, found by importing every module."""
    from simclr.registry import Registry

    package = importlib.import_module("simclr")
    for module in pkgutil.walk_packages(package.__path__, "simclr."):
        # An optional package missing: that module's entries are registered elsewhere.
        with contextlib.suppress(ImportError):
            importlib.import_module(module.name)
    found = {}
    for name, module in list(sys.modules.items()):
        if name == "simclr" or name.startswith("simclr."):
            for value in vars(module).values():
                if isinstance(value, Registry):
                    found[id(value)] = value
    return list(found.values())


def test_the_components_page_lists_every_registered_name():
    sections = _sections(_load_generator().components_page())
    registries = _registries()
    kinds = {registry.kind for registry in registries}
    assert {"backbone", "data set", "optimizer", "fine-tuning mode"} <= kinds
    for registry in registries:
        assert _row_names(sections[registry.kind]) == set(registry.names()), registry.kind
        for alias, name in registry._aliases.items():
            assert f"`{alias}`" in sections[registry.kind], (registry.kind, alias, name)

    from simclr.data.augment.ops import OPERATIONS
    from simclr.data.pipelines import PIPELINES

    operations = sections["augmentation operation"]
    assert _row_names(operations) == {op.name for op in OPERATIONS}
    for op in OPERATIONS:
        for option in op.options:
            assert f"`{option}`" in operations, (op.name, option)
    assert _row_names(sections["view pipeline"]) == set(PIPELINES)


def test_the_api_reference_renders_every_module():
    pages = "\n".join(_load_generator().api_pages().values())
    rendered = set(re.findall(r"^::: (\S+)", pages, flags=re.MULTILINE))
    src = ROOT / "src"
    modules = {
        ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for path in (src / "simclr").rglob("*.py")
        if path.name != "__main__.py"
    }
    assert modules <= rendered, sorted(modules - rendered)


# --- the documented commands -------------------------------------------------------------------


def documented_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` for every command line of a shell code block of the README and docs/
    (continuation lines joined, comments and ``VAR=...`` lines dropped; a placeholder such as
    ``<time>`` stands for its word)."""
    found = []
    for path in DOC_FILES:
        text = path.read_text()
        for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.M | re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"<([A-Za-z][\w .-]*)>", r"\1", line)  # <time>: a value to fill in
                try:
                    argv = shlex.split(line, comments=True)
                except ValueError:
                    continue
                if argv and not re.match(r"^[A-Za-z_]+=", argv[0]):
                    found.append((f"{path.relative_to(ROOT)}: {line.strip()}", argv))
    return found


def _entry_point_args(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(config name, arguments)`` of a ``train.py`` / ``finetune.py`` command line."""
    for index, word in enumerate(argv):
        if word in ENTRY_POINTS:
            return ENTRY_POINTS[word], argv[index + 1 :]
    return None


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """The overrides with each sweep (``a=1,2``) at its first value, as one job of it."""
    parser = OverridesParser.create()
    out = []
    for text, override in zip(overrides, parser.parse_overrides(overrides), strict=True):
        if override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
            text = f"{override.get_key_element()}={value}"
        out.append(text)
    return out


def test_every_documented_train_and_finetune_command_composes(tmp_path):
    commands = [(where, _entry_point_args(argv)) for where, argv in documented_commands()]
    commands = [(where, found) for where, found in commands if found]
    assert len(commands) >= 30  # the docs' commands were found
    failures, composed, cache = [], 0, {}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for where, (config_name, args) in commands:
            composed += _compose_or_report(where, config_name, args, tmp_path, failures, cache)
    assert not failures, "documented commands that do not compose:\n" + "\n".join(failures)
    assert composed >= 30


def _compose_or_report(where, config_name, args, tmp_path, failures, cache) -> int:
    """Compose one command's config (1), or skip it (0) where its Hydra plugin is missing; a
    failure goes to ``failures``.

    As Hydra does, the config groups are composed first and the value overrides applied after,
    in struct mode (``ConfigLoaderImpl._apply_overrides_to_config``); commands that choose the
    same groups share that first step (``cache``), which makes the test several times faster.
    """
    overrides = [a for a in args if a not in ("-m", "--multirun", "--cfg", "job", "--help")]
    overrides = [*_first_of_sweeps(overrides), f"paths.root_dir={tmp_path}"]
    needs = [
        plugin
        for group, plugin in PLUGIN_OF_GROUP.items()
        if any(o.startswith(f"{group}=") for o in overrides)
    ]
    if any(_missing(plugin) for plugin in needs):
        return 0  # that extra is not installed here
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        groups = [o.input_line for o in parsed if (CONFIG_DIR / o.key_or_group).is_dir()]
        values = [o for o in parsed if not (CONFIG_DIR / o.key_or_group).is_dir()]
        if any(o.is_hydra_override() for o in parsed):  # the hydra node: compose it all
            compose(config_name, overrides=overrides, return_hydra_config=True)
            return 1
        key = (config_name, tuple(groups))
        if key not in cache:
            cache[key] = compose(config_name, overrides=groups)
        cfg = copy.deepcopy(cache[key])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    except Exception as error:  # any composition error: report them all at once
        failures.append(f"{where}\n    {type(error).__name__}: {error}")
    return 1


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def quick_commands() -> list[list[str]]:
    """The documented commands that finish in seconds (``--cfg job``, ``--help``), as the
    arguments after ``python``, each once."""
    quick = []
    for _, argv in documented_commands():
        if "--help" not in argv and not ("--cfg" in argv and "job" in argv):
            continue
        python = next((i for i, word in enumerate(argv) if word.endswith("python")), None)
        if python is not None and argv[python + 1 :] not in quick:
            quick.append(argv[python + 1 :])
    return quick


def test_every_quick_documented_command_runs():
    commands = quick_commands()
    scripts = {argv[0] for argv in commands} | {argv[1] for argv in commands if argv[0] == "-m"}
    assert {"train.py", "finetune.py", "simclr.export"} <= scripts
    # Each as typed, in the repository's root, a process of its own (started from preloaded
    # imports, so in well under a second each).
    started = [(argv, start_python(argv, ROOT)) for argv in commands]
    failed = []
    for argv, process in started:
        result = finish(process, timeout=120)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            failed.append(f"{' '.join(argv)}: exit {result.returncode}: {output[-2000:]}")
        elif "--cfg" in argv:  # the composed config was printed
            assert "data_dir:" in output, argv
        else:
            assert re.search("usage|powered by hydra", output.lower()), argv
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_the_first_commands_set_up_train_and_test(page):
    # The quick start a fresh clone follows: make train (which installs) and make test.
    first = documented_commands()
    commands = [argv for where, argv in first if where.startswith(page)]
    assert ["make", "train"] in commands[:3] and ["make", "test"] in commands[:3]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^train: \$\(STAMP\)", makefile, re.M)
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.M)
