"""The citizens' web page, rendered by headless Chromium (Debian's chromium)."""
import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import quote

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class TextOf(HTMLParser):
    """The visible text of an element with an id, and of every table row, in the rendered DOM."""

    def __init__(self):
        super().__init__()
        self.rows, self.by_id, self._row, self._ids = [], {}, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self._row = []
        if attrs.get("id"):
            self._ids.append((attrs["id"], tag))
            self.by_id.setdefault(attrs["id"], "")

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(" ".join(" ".join(self._row).split()))
            self._row = None
        if self._ids and self._ids[-1][1] == tag:
            self._ids.pop()

    def handle_data(self, data):
        if self._row is not None:
            self._row.append(data)
        for element_id, _ in self._ids:
            self.by_id[element_id] += data


def render(url: str, tmp_path) -> TextOf:
    assert CHROMIUM, "Debian's chromium is needed: apt-get install chromium (.ci/run does it)"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=3000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = TextOf()
    parsed.feed(result.stdout)
    return parsed


def test_search_page_lists_what_the_citizen_looks_for(catalog_process, tmp_path):
    url, _ = catalog_process
    page = render(f"{url}/?q={quote('khai sinh')}", tmp_path)
    assert "Tìm thấy" in page.by_id["result-count"]
    assert any("Đăng ký khai sinh" in row and "Hộ tịch" in row for row in page.rows)
    assert not any("Chứng thực bản sao" in row for row in page.rows)


def test_detail_page_shows_documents_fees_time_limit_and_where_to_submit(catalog_process, tmp_path):
    url, _ = catalog_process
    page = render(f"{url}/thu-tuc/2.000815", tmp_path)
    assert page.by_id["time-limit"].startswith("Trong ngày")
    assert "Bộ phận tiếp nhận và trả kết quả" in page.by_id["submitted-at"]
    assert any("Bản chính" in row for row in page.rows)
    assert any("2.000 đồng/trang từ trang 1" in row and "tối đa 200.000 đồng/bản" in row for row in page.rows)


def test_unknown_procedure_page_says_so(catalog_process, tmp_path):
    url, _ = catalog_process
    page = render(f"{url}/thu-tuc/9.999997", tmp_path)
    assert "Không tìm thấy thủ tục 9.999997" in page.by_id.get("not-found", "")
