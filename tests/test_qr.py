"""QR codes of the worker's link and the foreman's sign-in link: what real Chromium shows decodes (with
zxing-cpp, a decoder written apart from the library that drew it) to the very link the command issued;
the files are new and 0600; a name that cannot be written is refused before any link is issued."""

from __future__ import annotations

import base64
import json
import stat
from types import SimpleNamespace

import pytest
import zxingcpp

from collector.store import Store
from tests.browser import open_tab
from tests.helpers import CollectorSetup

#: Draws an image (a data: URL, so the canvas is not tainted) on a canvas at its own size and hands back
#: its pixels as grey levels, base64: the code as a phone's camera would see the printed card.
PIXELS = """
const [source, done] = arguments;
const image = new Image();
image.onload = () => {
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth || 400; canvas.height = image.naturalHeight || 400;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let grey = "";
  for (let i = 0; i < rgba.length; i += 4) grey += String.fromCharCode(rgba[i]);
  done([canvas.width, canvas.height, btoa(grey)]);
};
image.onerror = () => done(null);
image.src = source;
"""


@pytest.fixture
def office(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    with Store(setup.location) as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="一号工地")
        store.add_worker("W1", name="张伟", sites=["S1"])
    return setup


def decoded(data_url: str) -> str:
    """The link in the picture, as a decoder apart from the one that drew it reads it."""
    driver = open_tab(size="1280,900")
    try:
        driver.set_script_timeout(30)
        found = driver.execute_async_script(PIXELS, data_url)
    finally:
        driver.quit()
    assert found is not None, "the browser could not draw the picture"
    width, height, grey = found
    pixels = base64.b64decode(grey)
    barcode = zxingcpp.read_barcode(zxingcpp.ImageView(pixels, width, height, zxingcpp.ImageFormat.Lum))
    assert barcode is not None, "no QR code found in the picture"
    return barcode.text


def data_url(path, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


@pytest.mark.parametrize("ending, kind", [(".png", "image/png"), (".svg", "image/svg+xml")])
def test_the_worker_link_as_a_picture_decodes_to_the_link(office, tmp_path, ending, kind):
    out = tmp_path / f"w1{ending}"
    issued = json.loads(office.run("worker", "link", "--worker", "W1", "--qr", str(out), "--json").stdout)
    assert issued["qr"] == str(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert decoded(data_url(out, kind)) == issued["url"]


def test_the_printable_card_reads_on_a_phone_and_its_code_is_the_link(office, tmp_path):
    out = tmp_path / "w1.html"
    result = office.run("worker", "link", "--worker", "W1", "--qr", str(out))
    url = result.stdout.split()[1]
    assert f"QR code written to {out} (card; 0600" in result.stdout
    page = out.read_text(encoding="utf-8")
    assert "张伟的考勤记录" in page and "工号 W1" in page and "不要拍照发给别人" in page and url in page
    assert "<script" not in page
    driver = open_tab(lang="zh-CN", size="412,915")
    try:
        driver.get(out.as_uri())
        # Nothing runs off a 412 px screen; the code is drawn large enough to scan.
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 412
        side = driver.execute_script("return document.querySelector('.code svg').getBoundingClientRect().width")
        assert side >= 200
        svg = driver.execute_script("return new XMLSerializer().serializeToString(document.querySelector('.code svg'))")
    finally:
        driver.quit()
    assert decoded("data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()) == url


def test_the_foremans_sign_in_card_says_when_in_site_time(office, tmp_path):
    out = tmp_path / "s1.html"
    issued = json.loads(office.run("web", "link", "--site", "S1", "--minutes", "30", "--qr", str(out),
                                   "--json").stdout)
    page = out.read_text(encoding="utf-8")
    assert "一号工地 工地考勤页面" in page and "只能用一次" in page and issued["url"] in page
    # The card is read at the site: its time is the site's (UTC+8), not the Z of the JSON.
    utc = issued["expires_at"]
    hour = (int(utc[11:13]) + 8) % 24
    assert f"{hour:02d}:{utc[14:16]} 以前有效" in page
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("name, why", [("w1.jpg", "a QR code is written as .png, .svg, .html"),
                                       ("taken.png", "already exists")])
def test_a_file_it_cannot_write_is_refused_before_a_link_is_issued(office, tmp_path, name, why):
    out = tmp_path / name
    if name == "taken.png":
        out.write_bytes(b"the operator's own picture")
    for command in (["worker", "link", "--worker", "W1"], ["web", "link", "--site", "S1"]):
        result = office.run(*command, "--qr", str(out), check=False)
        assert result.returncode == 1 and why in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    with Store(office.location, readonly=True) as store:
        assert store.execute("SELECT COUNT(*) FROM worker_links").fetchone()[0] == 0
        assert store.execute("SELECT COUNT(*) FROM web_signin_links").fetchone()[0] == 0
    if name == "taken.png":
        assert out.read_bytes() == b"the operator's own picture"
