"""HTML pages as seeds: opt-in through `seeds.kinds`, the main text without the page's
navigation, and an element view with stable ids; broken pages are counted and skipped. The
existing seed sets and ids stay as they were."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from lxml import html

from gristmill.config.load import load_config, validate_config
from gristmill.config.resume import answer_changes
from gristmill.flows import agentinstruct, staged
from gristmill.flows.templates import compile_template
from gristmill.seeds import SeedSource, SeedsConfig
from gristmill.seeds.elements import element_view, render
from gristmill.seeds.presplit import PresplitSource, seed_line

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "configs" / "seeds"
WEB = SEEDS / "web"

SHOP_VIEW = """\
[e1] banner
[e2] link "Millbrook Pantry" -> /
[e3] navigation "Main"
[e4] link "Flours" -> /flours
[e5] link "Grains" -> /grains
[e6] link "Baking tools" -> /baking-tools
[e7] link "Cart (0)" -> /cart
[e8] search GET /search
[e9] searchbox "Search the shop"
[e10] button "Search"
[e11] main
[e12] heading "Stoneground Rye Flour, 1 kg" h1
[e13] img "A paper bag of rye flour on a wooden table"
[e14] heading "Buy" h2
[e15] form POST /cart/add
[e16] combobox "Grind" = "Medium" options: Fine | Medium | Coarse
[e17] textbox "Quantity" (number) = "1" required
[e18] checkbox "Gift wrap"
[e19] button "Add to cart"
[e20] heading "Reviews" h2
[e21] contentinfo
[e22] link "About the mill" -> /about
[e23] link "Shipping and returns" -> /shipping"""


def pages(path: Path, **options) -> SeedSource:
    options.setdefault("min_chars", 0)
    return SeedSource(SeedsConfig(path=path, kinds=["html"], **options))


def test_the_element_view_of_the_shop_page_is_pinned():
    [seed] = list(pages(WEB / "shop-product.html"))
    assert seed.kind == "html" and seed.title == "Stoneground Rye Flour, 1 kg - Millbrook Pantry"
    assert seed.extra["elements_text"] == SHOP_VIEW
    grind = seed.extra["elements"][15]
    assert grind == {"id": "e16", "role": "combobox", "name": "Grind",
                     "options": ["Fine", "Medium", "Coarse"], "value": "Medium"}
    assert "RYE-1000" not in SHOP_VIEW  # the hidden input is no element


def test_element_ids_are_the_same_on_every_read_and_the_id_follows_the_content(tmp_path):
    first, second = list(pages(WEB)), list(pages(WEB))
    assert [s.extra for s in first] == [s.extra for s in second]
    assert [s.id for s in first] == [s.id for s in second] and len(first) == 5
    for seed in first:  # e1, e2, ... in document order, no gaps
        assert [e["id"] for e in seed.extra["elements"]] == \
            [f"e{i}" for i in range(1, len(seed.extra["elements"]) + 1)]
    page = (WEB / "settings.html").read_text()
    (tmp_path / "settings.html").write_text(page)
    before = next(iter(pages(tmp_path)))
    # Same prose, one more button: another seed id, and the button is the next element
    (tmp_path / "settings.html").write_text(page.replace(
        "</main>", '<button type="button">Export notebooks</button></main>'))
    after = next(iter(pages(tmp_path)))
    assert after.text == before.text and after.id != before.id
    assert after.extra["elements"][-1] == {"id": f"e{len(before.extra['elements']) + 1}",
                                           "role": "button", "name": "Export notebooks"}


def test_main_text_keeps_the_article_and_drops_the_navigation():
    [seed] = list(pages(WEB / "news-article.html"))
    assert seed.text.startswith("Old water mill grinds again after forty years\n\n")
    assert "retired miller in the Black Forest" in seed.text
    for boilerplate in ("Subscribe", "Cookie settings", "Imprint", "Share this article",
                        "Get the Courier in your inbox"):
        assert boilerplate not in seed.text
    assert '"Cookie settings"' in seed.extra["elements_text"]  # still an element, not text


def test_accessible_names_come_from_labels_aria_alt_placeholder_and_title():
    root = html.document_fromstring("""<html><body>
      <span id="lbl">Promo code</span><input aria-labelledby="lbl">
      <label for="n">Your name</label><input id="n" placeholder="ignored">
      <label>Remember me <input type="checkbox" checked></label>
      <input type="search" placeholder="Find a recipe">
      <a href="/x" title="Shopping basket"></a>
      <a href="/home"><img src="h.png" alt="Home page"></a>
      <input type="submit">
      <div role="button" aria-label="Close dialog">x</div>
      <div style="display: none"><button>Invisible</button></div>
      <button hidden>Also hidden</button><input type="hidden" value="t">
      <img src="spacer.gif" alt="">
      <select multiple name="tags"><option>Rye</option><option selected>Oat</option></select>
    </body></html>""")
    elements, omitted = element_view(root)
    assert [(e["role"], e["name"]) for e in elements] == [
        ("textbox", "Promo code"), ("textbox", "Your name"), ("checkbox", "Remember me"),
        ("searchbox", "Find a recipe"), ("link", "Shopping basket"), ("link", "Home page"),
        ("img", "Home page"), ("button", "Submit"), ("button", "Close dialog"),
        ("listbox", "")]
    assert elements[2]["checked"] is True and elements[-1]["value"] == "Oat"
    assert omitted == 0
    assert render(elements).splitlines()[2] == '[e3] checkbox "Remember me" checked'


def write_mixed_folder(folder: Path) -> None:
    (folder / "notes.txt").write_text("Millstones are dressed by hand every few weeks.")
    (folder / "page.html").write_text((WEB / "settings.html").read_text())
    (folder / "prices.csv").write_text("item,price\nrye,4.20\noats,2.60\n")
    (folder / "stock.table.jsonl").write_text('{"item": "rye", "bags": 37}\n')
    (folder / "records.jsonl").write_text('{"text": "A JSONL record of prose."}\n')


def test_html_and_tables_are_read_only_when_listed_in_kinds(tmp_path):
    write_mixed_folder(tmp_path)
    default = SeedSource(SeedsConfig(path=tmp_path, min_chars=0))
    assert sorted(s.kind for s in default) == ["prose", "prose"]
    assert default.report.counts["ignored"] == 3  # the page, the CSV, the table JSONL
    assert default.report.problems == []  # a table JSONL is not read as prose records
    opted = SeedSource(SeedsConfig(path=tmp_path, min_chars=0, kinds=["prose", "html", "table"]))
    by_kind = {}
    for seed in opted:
        by_kind.setdefault(seed.kind, []).append(Path(seed.source.split(":")[0]).name)
    assert by_kind == {"html": ["page.html"], "table": ["prices.csv", "stock.table.jsonl"],
                       "prose": ["notes.txt", "records.jsonl"]}
    assert opted.report.counts["ignored"] == 0
    only_pages = SeedSource(SeedsConfig(path=tmp_path, min_chars=0, kinds=["html"]))
    assert [s.kind for s in only_pages] == ["html"]
    assert only_pages.report.counts["ignored"] == 4


def test_a_page_named_explicitly_is_read_as_before_unless_html_is_listed(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><body><p>Plain words about a mill.</p></body></html>")
    [seed] = SeedSource(SeedsConfig(path=page, min_chars=0))
    assert seed.kind == "prose" and seed.text.startswith("<html>")  # as before kinds existed
    [seed] = pages(page)
    assert seed.kind == "html" and seed.text == "Plain words about a mill."


def test_broken_pages_are_counted_and_skipped(tmp_path):
    (tmp_path / "a_binary.html").write_bytes(b"<html>\0\0\x89PNG")
    (tmp_path / "b_latin1.html").write_bytes("<p>Caf\xe9 cr\xe8me</p>".encode("latin-1"))
    (tmp_path / "c_empty.html").write_bytes(b"")
    (tmp_path / "d_blank.htm").write_text("  \n\t\n")
    (tmp_path / "e_no_body.html").write_text(
        "<html><head><title>x</title></head><body></body></html>")
    (tmp_path / "f_good.html").write_text((WEB / "flight-search.html").read_text())
    src = pages(tmp_path)
    seeds = list(src)
    assert [Path(s.source).name for s in seeds] == ["f_good.html"]
    reasons = {Path(where).name: reason for where, reason, _ in src.report.problems}
    assert reasons == {"a_binary.html": "binary", "b_latin1.html": "bad_encoding",
                       "c_empty.html": "empty", "d_blank.htm": "empty",
                       "e_no_body.html": "empty"}
    assert src.report.summary()["skipped"] == {"bad_encoding": 1, "binary": 1, "empty": 3}


def test_a_page_of_only_a_form_is_a_seed_of_its_elements(tmp_path):
    (tmp_path / "login.html").write_text(
        '<form action="/login"><input name="u" aria-label="User">'
        '<input type="submit" value="Log in"></form>')
    [seed] = pages(tmp_path)
    assert seed.text == ""
    assert seed.extra["elements_text"] == '[e1] form GET /login\n[e2] textbox "User"\n' \
                                          '[e3] button "Log in"'
    assert list(pages(tmp_path, min_chars=300)) == []  # min_chars counts text and elements


def test_templates_see_the_element_view_and_presplit_files_keep_it(tmp_path):
    [page] = pages(WEB / "settings.html")
    [prose] = SeedSource(SeedsConfig(path=SEEDS / "demo" / "tides.txt", min_chars=0))
    template = compile_template("{{ kind }} {{ page_title }}|{{ element_ids[:3] }}|{{ elements }}")
    for first_item in (staged.first_item, agentinstruct.first_item):
        values = first_item(page, 0).values
        assert values["element_ids"][:2] == ["e1", "e2"] and values["table"] is None
        rendered = template.render(values)
        assert rendered.startswith("html Account settings - Harvest Notes|['e1', 'e2', 'e3']|")
        assert '[e13] button "Save changes"' in rendered
        assert template.render(first_item(prose, 0).values) == "prose |[]|"
    shard = tmp_path / "seeds.jsonl"
    shard.write_bytes(seed_line(page, 0) + seed_line(prose, 1))
    assert list(PresplitSource(shard)) == [page, prose]


# The seeds of configs/agentinstruct.yaml (path: configs/seeds) as they were before HTML
# and table seeds existed: the new web/ and tables/ folders change none of them.
AGENTINSTRUCT_SEED_IDS = [
    ("903e3fdcc5531a4f", "code/inventory.py"), ("c8413c68a530cc8d", "code/rate_window.js"),
    ("407cdb635b719a09", "code/word_stats.py"), ("316393b333d47290", "demo/photosynthesis.txt"),
    ("eb23f13431e5f14f", "demo/printing.txt"), ("848c6047247c3b1e", "demo/tides.txt"),
    ("fcea6ec1ba52c22c", "demo/vaccines.txt"), ("210f5d1626228d07", "demo/watermills.txt"),
]


def existing_config() -> dict:
    """configs/agentinstruct.yaml as a config written before `kinds` existed (the shipped one
    now opts in to html and tables)."""
    data = load_config(ROOT / "configs" / "agentinstruct.yaml").model_dump(mode="json")
    data["seeds"] = {k: v for k, v in data["seeds"].items() if k not in ("kinds", "table")}
    return data


def test_an_existing_config_keeps_its_seeds_and_ids():
    config = validate_config(existing_config())
    assert config.seeds.kinds == ["code", "prose"]
    src = SeedSource(config.seeds)
    assert [(s.id, Path(s.source).relative_to(SEEDS).as_posix()) for s in src] == \
        AGENTINSTRUCT_SEED_IDS
    assert src.report.problems == [] and src.report.counts["ignored"] == 10  # 5 pages, 5 tables


def test_a_run_started_before_kinds_existed_resumes_and_a_changed_kind_does_not():
    old = existing_config()
    new = validate_config(old).model_dump(mode="json")
    assert answer_changes(old, new) == []  # missing fields count as their defaults
    opted = {**new, "seeds": {**new["seeds"], "kinds": ["code", "html", "prose"]}}
    assert answer_changes(old, opted) == ["seeds.kinds"]


def run_gristmill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gristmill", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_validate_and_dry_run_show_html_and_table_seeds(tmp_path):
    config = {"name": "web", "seeds": {"path": str(SEEDS), "kinds": ["prose", "html", "table"]},
              "backends": {"default": {"base_url": "http://127.0.0.1:9/v1", "model": "mock"}},
              "stages": [{"name": "task", "sampling": {"max_tokens": 100},
                          "prompt": "A {{ kind }} seed.\n{{ elements }}\n{{ seed }}"}]}
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(config))
    checked = run_gristmill("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert yaml.safe_load(checked.stdout)["seeds"]["kinds"] == ["html", "prose", "table"]
    planned = run_gristmill("run", str(path), "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "dry run: 15 seeds -> about 15 requests" in planned.stdout  # 5 prose, 5 pages, 5 tables
    config["seeds"]["path"] = str(WEB)
    path.write_text(yaml.safe_dump(config))
    shown = run_gristmill("run", str(path), "--dry-run").stdout
    assert "── seed: " + str(WEB / "flight-search.html") in shown
    assert 'A html seed.\n[e1] banner\n[e2] link "Skylark Air" -> /' in shown
