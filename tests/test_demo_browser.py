"""The web demo in a real headless browser (Debian's chromium + chromedriver, driven by selenium): upload pydicom's
CT file, see its tile preview, ask a question, read the streamed answer of a tiny checkpoint trained to give it, and
keep a screenshot. Also checks that nothing leaves the machine: every request the page makes and every connection
the server opens (Python audit hook) is on loopback, and uploads live only in the demo's own temporary folder."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chat_fixtures import ANSWER_DEMO, QUESTION_DEMO, REASONING_DEMO, dicom_path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Headless flags for this machine's closed network (no background services reaching out).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")

# The demo under a Python audit hook that records every outbound socket connection and name lookup.
AUDITED_DEMO = """
import json, runpy, sys
log = open(sys.argv[1], "a", buffering=1)
def hook(event, args):
    if event == "socket.connect":
        log.write(json.dumps(["connect", repr(args[1])]) + "\\n")
    elif event == "socket.getaddrinfo":
        log.write(json.dumps(["getaddrinfo", repr(args[0])]) + "\\n")
sys.addaudithook(hook)
sys.argv = ["llava-medgpt-demo"] + sys.argv[2:]
runpy.run_module("llava_medgpt.demo", run_name="__main__")
"""
LOOPBACK = re.compile(r"^\('?(127\.\d+\.\d+\.\d+|::1|localhost)'?|^'(127\.\d+\.\d+\.\d+|::1|localhost)'$|^'/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("LLAVA_MEDGPT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def demo(trained_chat_checkpoint, tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: bash scripts/setup.sh --tests installs them")
    checkpoint, _ = trained_chat_checkpoint
    port = _free_port()
    audit = tmp_path / "sockets.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    process = subprocess.Popen([sys.executable, "-c", AUDITED_DEMO, str(audit), "--model", str(checkpoint),
                                "--port", str(port), "--max-new-tokens", "48"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("Running on local URL" in line for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the demo did not start:\n" + "".join(lines))
        time.sleep(0.5)
    temp_dir = Path(next(line for line in lines if "temporary folder for uploads:" in line).split(": ", 1)[1].strip())
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "port": port, "temp_dir": temp_dir, "audit": audit,
               "process": process, "lines": lines}
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _browser(user_data_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_demo_in_a_real_browser(demo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    artifacts = artifacts_dir()
    driver = _browser(tmp_path / "chromium-profile")
    try:
        driver.get(demo["url"])
        wait = WebDriverWait(driver, 240)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
        upload.send_keys(dicom_path())
        # The preview: the 128x128 CT is one tile (no thumbnail), 144 tokens.
        caption = "CT_small.dcm: 128x128, 1x1 grid, 1 tile, 144 tokens"
        wait.until(lambda d: caption in d.find_element(By.ID, "tiles").text)
        assert driver.find_elements(By.CSS_SELECTOR, "#tiles img")
        uploaded = [path for path in demo["temp_dir"].rglob("*") if path.is_file()]
        assert any(path.name == "CT_small.dcm" for path in uploaded)  # the upload lives in the demo's folder

        driver.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(QUESTION_DEMO)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: ANSWER_DEMO in d.find_element(By.ID, "chat").text)
        chat = driver.find_element(By.ID, "chat").text
        assert QUESTION_DEMO in chat and "CT_small.dcm" in chat
        assert "Reasoning" in chat  # the analysis channel sits in its own collapsible message
        assert chat.index("Reasoning") < chat.index(ANSWER_DEMO)
        wait.until(lambda d: caption in d.find_element(By.ID, "tiles").text)  # the conversation's images stay shown
        # Open the reasoning panel and read the analysis text.
        driver.find_element(By.XPATH, "//*[@id='chat']//*[contains(text(), 'Reasoning')]").click()
        wait.until(lambda d: REASONING_DEMO in d.find_element(By.ID, "chat").text)
        screenshot = artifacts / "demo_browser.png"
        driver.save_screenshot(str(screenshot))
        print(f"\ndemo screenshot: {screenshot}")
        assert screenshot.stat().st_size > 10_000

        requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
    finally:
        driver.quit()
    # chrome:// and about: are the browser's own pages (its start page), not network requests.
    local = (f"http://127.0.0.1:{demo['port']}/", f"ws://127.0.0.1:{demo['port']}/", "data:", "blob:", "chrome://",
             "about:")
    assert urls and all(url.startswith(local) for url in urls), sorted(u for u in urls if not u.startswith(local))

    os.kill(demo["process"].pid, signal.SIGTERM)
    demo["process"].wait(timeout=60)
    assert not demo["temp_dir"].exists()  # uploads and previews are gone with the demo
    calls = [json.loads(line) for line in demo["audit"].read_text().splitlines()]
    remote = [call for call in calls if not LOOPBACK.match(call[1])]
    assert not remote, remote  # no analytics, version checks, share tunnels or CDN fetches from the server


def test_demo_help_is_lazy():
    code = ("import sys\nfrom llava_medgpt.demo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('gradio loaded:', 'gradio' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "--host" in result.stdout and "default: this machine only" in result.stdout
    assert "gradio loaded: False" in result.stdout
