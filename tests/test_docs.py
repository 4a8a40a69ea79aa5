"""The documentation site: built in strict mode (a broken link fails), its generated
references complete, and a course page opened in a real headless browser with its
figures drawn. The README stays a front page."""

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import chrome

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    environment = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=ROOT, env=environment, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    return out


@pytest.fixture
def served(site):
    """The built site over HTTP on 127.0.0.1, as a reader's browser gets it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_readme_is_a_front_page_that_links_into_the_site():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in ("docs/course/index.md", "docs/commands.md", "docs/results.md", "docs/scale.md"):
        assert f"({page})" in readme, f"README links to {page}"
        assert (ROOT / page).is_file()


@pytest.mark.slow
def test_references_are_generated_from_the_code(site):
    from microrep import PUBLIC
    from microrep.cli import build_parser

    cli = (site / "cli" / "index.html").read_text()
    for name, command in build_parser().commands.items():
        assert f"microrep {name}" in cli
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in cli, f"{flag} of microrep {name} is missing from the CLI reference"
    api = (site / "api" / "index.html").read_text()
    missing = [name for name in PUBLIC if f'id="{PUBLIC[name]}.{name}"' not in api]
    assert not missing, f"public names without an API entry: {missing}"


@pytest.mark.slow
def test_a_course_page_draws_its_figures_in_a_real_browser(served, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chrome(tmp_path, local_server=True)
    try:
        driver.get(f"{served}/course/05_embeddings_and_pca/")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
        assert "Embeddings, PCA" in driver.title
        figures = driver.execute_script(
            "return [...document.querySelectorAll('img[src^=\"data:image/png\"]')]"
            ".map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
        assert len(figures) >= 3
        assert all(complete and natural > 100 and shown > 100 for complete, natural, shown in figures), figures
        headings = driver.execute_script("return [...document.querySelectorAll('h2')].map(h => h.textContent)")
        assert any("Exercises" in heading for heading in headings)
    finally:
        driver.quit()
