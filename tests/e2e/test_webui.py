"""The Temporal Web UI in a real browser (issue 16; `make e2e-ui`).

Debian's `chromium` driven by Selenium through Debian's `chromium-driver` (no browser download):
start the local stack with its codec endpoint, create a cluster, open the Web UI, filter the
workflow list by the `CaptCluster` search attribute, open the cluster's workflow and check that
its input — encrypted in Temporal — is shown decoded (the UI asks the codec endpoint), and that
its summary is readable. Screenshots go to docs/img/ (the README shows them).

Skipped, with the reason, where chromium, chromium-driver or selenium is missing.
"""

from __future__ import annotations

import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e.test_secrets_e2e import debug_stack as stack  # noqa: F401 - a module-scoped stack
from tests.e2e.test_secrets_e2e import run
from tests.support.paths import QUICKSTART, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.webui]
NAME, NS = "webui-demo", "team-ui"
IMG = ROOT / "docs" / "img"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("no Debian chromium/chromium-driver here: `make e2e-ui` installs them (apt-get, as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make e2e-ui)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _wait_for(driver, predicate, what: str, timeout: float = 60) -> None:
    """Until predicate(the page's visible text) holds (the UI renders asynchronously)."""
    from selenium.webdriver.common.by import By

    def visible_text() -> str:
        # The summary and details render as sandboxed markdown, each in its own iframe.
        parts = [driver.find_element(By.TAG_NAME, "body").text]
        for frame in driver.find_elements(By.TAG_NAME, "iframe"):
            try:
                driver.switch_to.frame(frame)
                parts.append(driver.find_element(By.TAG_NAME, "body").text)
            except Exception:  # noqa: BLE001 - a frame that went away while the UI re-rendered
                pass
            finally:
                driver.switch_to.default_content()
        return "\n".join(parts)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(visible_text()):
            return
        time.sleep(0.5)
    shot = Path("/tmp") / f"webui-failed-{int(time.time())}.png"
    driver.save_screenshot(str(shot))
    raise AssertionError(f"the Web UI never showed {what} (screenshot {shot})")


def manifest(tmp_path) -> Path:
    text = QUICKSTART.read_text().replace("namespace: capi-quickstart", f"namespace: {NS}")
    text = text.replace("capi-quickstart", NAME).replace("replicas: 3", "replicas: 1")
    path = tmp_path / "webui.yaml"
    path.write_text(text)
    return path


def test_the_web_ui_lists_filters_and_decodes_a_cluster(stack, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    env, state_dir = stack
    driver = _browser()
    try:
        run(env, "apply", "-f", str(manifest(tmp_path)), "--wait", "--timeout", "15m")
        ui = env.get("CAPT_WEB_UI") or _ui_url(state_dir)
        IMG.mkdir(parents=True, exist_ok=True)

        query = urllib.parse.quote(f'CaptCluster="{NAME}"')
        driver.get(f"{ui}/namespaces/default/workflows?query={query}")
        wf_id = f"cluster/{NS}/{NAME}"
        _wait_for(driver, lambda text: wf_id in text, f"the workflow {wf_id} in the filtered list")
        _wait_for(driver, lambda text: f'CaptCluster = "{NAME}"' in text, "the CaptCluster filter applied")
        driver.save_screenshot(str(IMG / "webui-list.png"))

        driver.get(f"{ui}/namespaces/default/workflows/{urllib.parse.quote(wf_id, safe='')}")
        # The input, encrypted in Temporal, decoded by the codec endpoint: the spec's fields.
        _wait_for(
            driver,
            lambda text: f'"name": "{NAME}"' in text and '"region": "ap-northeast-2"' in text,
            "the decoded input",
        )
        assert "Codec Server could not connect" not in driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(str(IMG / "webui-workflow.png"))
        # The summary set at start and the current details the workflow keeps (user metadata,
        # encoded payloads too).
        driver.find_element(By.XPATH, "//*[normalize-space(text())='User Metadata']").click()
        _wait_for(driver, lambda text: f"cluster {NS}/{NAME} in ap-northeast-2" in text, "the summary")
        _wait_for(driver, lambda text: f"{NS}/{NAME} — Ready" in text, "the current details")
        driver.save_screenshot(str(IMG / "webui-details.png"))
    finally:
        driver.quit()
        run(env, "delete", "cluster", NAME, "-n", NS, "--wait", "--timeout", "15m")


def _ui_url(state_dir: Path) -> str:
    import json

    status = json.loads((state_dir / "stack.json").read_text())
    for key in ("ui_url", "web_ui"):
        if key in status:
            return status[key]
    return f"http://127.0.0.1:{status['ui_port']}"
