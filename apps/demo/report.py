"""The demo's report: form II.06a per unit on the terminal, and a folder with ``report.json``,
``ii06a.csv``, four plots (PNG, matplotlib's Agg backend) and ``index.html`` that shows them.

Everything here is computed from the services' answers about simulated time; nothing depends
on the wall clock, so the same seed writes the same files.
"""
from __future__ import annotations

import html
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

II06A_COLUMNS = [("received", "(3)"), ("online", "(4)"), ("in_person_or_post", "(5)"), ("carried_over", "(6)"),
                 ("resolved", "(7)"), ("early", "(8)"), ("on_time", "(9)"), ("late", "(10)"), ("pending", "(11)"),
                 ("within_deadline", "(12)"), ("overdue", "(13)")]
COLUMN_TITLES = {"received": "Tiếp nhận", "online": "Trực tuyến", "in_person_or_post": "Trực tiếp, bưu chính",
                 "carried_over": "Kỳ trước", "resolved": "Đã giải quyết", "early": "Trước hạn", "on_time": "Đúng hạn",
                 "late": "Quá hạn", "pending": "Đang giải quyết", "within_deadline": "Trong hạn",
                 "overdue": "Quá hạn"}
METHODS = ("cash", "transfer", "online")
METHOD_VI = {"cash": "Tiền mặt", "transfer": "Chuyển khoản", "online": "Trực tuyến"}


def processing_hours(views: list[dict]) -> dict[str, list[float]]:
    """Hours from receipt to result of every dossier processed, per receiving unit (sorted)."""
    hours: dict[str, list[float]] = {}
    for view in views:
        if view["state"] == "processed" and view.get("resolved_at"):
            spent = datetime.fromisoformat(view["resolved_at"]) - datetime.fromisoformat(view["received_at"])
            hours.setdefault(view["unit"], []).append(round(spent.total_seconds() / 3600, 3))
    return {unit: sorted(values) for unit, values in sorted(hours.items())}


def overdue_by_agency(views: list[dict]) -> dict[str, dict[str, int]]:
    """Dossiers that went overdue, by the agency at fault, and the apologies they gave."""
    overdue = Counter(v["overdue_agency"] for v in views if v.get("overdue_at") and v.get("overdue_agency"))
    apologies = Counter(v["apology"]["agency"] for v in views if v.get("apology"))
    return {agency: {"overdue": overdue[agency], "apologies": apologies[agency]}
            for agency in sorted(set(overdue) | set(apologies))}


def fees_by_unit(rows: list[dict]) -> dict[str, dict[str, int]]:
    return {row["unit"]: {**{m: int(row["collected"].get(m, 0)) for m in METHODS},
                          "charged": int(sum(row["charged"].values())), "refunded": int(row["refunded"]),
                          "outstanding": int(row["outstanding"])}
            for row in sorted(rows, key=lambda r: r["unit"])}


def balanced(ii06a: dict) -> list[str]:
    """Units whose totals do not balance (received = resolved + pending); empty when all do."""
    return [unit["unit"] for unit in ii06a["units"]
            if unit["total"]["received"] != unit["total"]["resolved"] + unit["total"]["pending"]]


def ii06a_table(ii06a: dict, names: dict[str, str]) -> str:
    """Form II.06a, one line per unit (its total over fields) and the grand total, as text."""
    width = max([len(names.get(u["unit"], u["unit"])) for u in ii06a["units"]] + [10])
    header = f"{'Đơn vị':<{width}} " + " ".join(f"{label:>5}" for _, label in II06A_COLUMNS) + "  (3)=(7)+(11)"
    lines = [f"Mẫu II.06a — {ii06a['from']} … {ii06a['to']}", header, "-" * len(header)]

    def line(name: str, row: dict) -> str:
        ok = "đúng" if row["received"] == row["resolved"] + row["pending"] else "SAI"
        return f"{name:<{width}} " + " ".join(f"{row[key]:>5}" for key, _ in II06A_COLUMNS) + f"  {ok}"

    for unit in ii06a["units"]:
        lines.append(line(names.get(unit["unit"], unit["unit"]), unit["total"]))
    lines.append("-" * len(header))
    lines.append(line("Tổng cộng", ii06a["total"]))
    legend = ", ".join(f"{label} {COLUMN_TITLES[key]}" for key, label in II06A_COLUMNS)
    return "\n".join(lines + [legend])


# --- plots -----------------------------------------------------------------------------------

def _figure(width: float, height: float):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    pyplot.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9, "svg.hashsalt": "motcua"})
    return pyplot, pyplot.subplots(figsize=(width, height), dpi=100)


def _save(pyplot, figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
    pyplot.close(figure)


def plot_processing(hours: dict[str, list[float]], names: dict[str, str], path: Path) -> None:
    pyplot, (figure, axes) = _figure(10, 4.5)
    units = [u for u in hours if hours[u]]
    if units:
        axes.boxplot([hours[u] for u in units], tick_labels=[names.get(u, u) for u in units], showfliers=True)
        axes.set_yscale("log")
    axes.set_ylabel("giờ, từ tiếp nhận đến có kết quả (thang log)")
    axes.set_title("Thời gian giải quyết hồ sơ theo đơn vị tiếp nhận")
    axes.tick_params(axis="x", rotation=60)
    _save(pyplot, figure, path)


def plot_on_time(ii06a: dict, names: dict[str, str], path: Path) -> None:
    pyplot, (figure, axes) = _figure(10, 4)
    units = [u for u in ii06a["units"] if u["total"]["resolved"]]
    rates = [100 * (u["total"]["on_time_rate"] or 0) for u in units]
    bars = axes.bar([names.get(u["unit"], u["unit"]) for u in units], rates, color="#2b7a3d")
    for bar, unit in zip(bars, units):
        axes.annotate(f"{unit['total']['resolved']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=7)
    axes.set_ylim(0, 105)
    axes.set_ylabel("% đúng hạn và trước hạn")
    axes.set_xlabel("số trên cột: hồ sơ đã giải quyết")
    axes.set_title("Tỷ lệ giải quyết đúng hạn theo đơn vị")
    axes.tick_params(axis="x", rotation=60)
    _save(pyplot, figure, path)


def plot_overdue(overdue: dict[str, dict[str, int]], names: dict[str, str], path: Path) -> None:
    pyplot, (figure, axes) = _figure(9, 4)
    agencies = list(overdue)
    labels = [names.get(a, a) for a in agencies]
    positions = range(len(agencies))
    axes.barh([p + 0.2 for p in positions], [overdue[a]["overdue"] for a in agencies], height=0.4,
              color="#b03a2e", label="hồ sơ quá hạn")
    axes.barh([p - 0.2 for p in positions], [overdue[a]["apologies"] for a in agencies], height=0.4,
              color="#d4ac0d", label="thư xin lỗi (Mẫu 04)")
    axes.set_yticks(list(positions), labels)
    axes.set_xlabel("số hồ sơ")
    axes.set_title("Hồ sơ quá hạn theo cơ quan chịu trách nhiệm")
    if agencies:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "Không có hồ sơ quá hạn", transform=axes.transAxes, ha="center")
    _save(pyplot, figure, path)


def plot_fees(fees: dict[str, dict[str, int]], names: dict[str, str], path: Path) -> None:
    pyplot, (figure, axes) = _figure(10, 4)
    units = list(fees)
    labels = [names.get(u, u) for u in units]
    bottom = [0.0] * len(units)
    for method, colour in zip(METHODS, ("#1f618d", "#7d3c98", "#17a589")):
        values = [fees[u][method] / 1000 for u in units]
        axes.bar(labels, values, bottom=bottom, label=METHOD_VI[method], color=colour)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes.set_yscale("symlog", linthresh=100)
    axes.set_ylabel("nghìn đồng (thang log)")
    axes.set_title("Phí, lệ phí đã thu theo đơn vị và hình thức")
    axes.tick_params(axis="x", rotation=60)
    axes.legend()
    _save(pyplot, figure, path)


# --- the folder --------------------------------------------------------------------------------

PLOTS = {"processing-times.png": "Thời gian giải quyết theo phường", "on-time-rate.png": "Tỷ lệ đúng hạn",
         "overdue-by-agency.png": "Quá hạn theo cơ quan", "fees-collected.png": "Phí, lệ phí đã thu"}


def write(folder: Path, data: dict, names: dict[str, str]) -> list[Path]:
    """Write the report folder; returns the files written."""
    from services.routing.reports import as_csv
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "report.json", folder / "ii06a.csv", *(folder / name for name in PLOTS), folder / "index.html"]
    files[0].write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    files[1].write_text(as_csv(data["ii06a"]), encoding="utf-8")
    plot_processing(data["processing_hours"], names, folder / "processing-times.png")
    plot_on_time(data["ii06a"], names, folder / "on-time-rate.png")
    plot_overdue(data["overdue_by_agency"], names, folder / "overdue-by-agency.png")
    plot_fees(data["fees"], names, folder / "fees-collected.png")
    files[-1].write_text(page(data, names), encoding="utf-8")
    return files


def page(data: dict, names: dict[str, str]) -> str:
    esc = html.escape
    ii06a = data["ii06a"]
    head = "".join(f"<th title='{esc(COLUMN_TITLES[key])}'>{label}<br><small>{esc(COLUMN_TITLES[key])}</small></th>"
                   for key, label in II06A_COLUMNS)

    def row(name: str, line: dict, strong: bool = False) -> str:
        cells = "".join(f"<td>{line[key]}</td>" for key, _ in II06A_COLUMNS)
        rate = "" if line["on_time_rate"] is None else f"{100 * line['on_time_rate']:.1f} %"
        ok = "✔" if line["received"] == line["resolved"] + line["pending"] else "✘"
        tag = "th" if strong else "td"
        return f"<tr><{tag} class='name'>{esc(name)}</{tag}>{cells}<td>{rate}</td><td>{ok}</td></tr>"

    rows = "".join(row(names.get(u["unit"], u["unit"]), u["total"]) for u in ii06a["units"])
    rows += row("Tổng cộng", ii06a["total"], strong=True)
    fees_rows = "".join(
        f"<tr><td class='name'>{esc(names.get(u, u))}</td>" + "".join(f"<td>{f[m]:,}</td>" for m in METHODS)
        + f"<td>{f['refunded']:,}</td><td>{f['outstanding']:,}</td></tr>" for u, f in data["fees"].items())
    activity = data["activity"]
    facts = [("Hồ sơ theo kế hoạch", data["plan"]["arrivals"]), ("Phiếu hướng dẫn (hồ sơ chưa đủ)", activity["guidance_slips"]),
             ("Nộp trực tuyến", activity["submitted_online"]), ("Từ chối tiếp nhận (Mẫu 03)", activity["desk_refusals"]),
             ("Tiếp nhận", activity["received"]), ("Yêu cầu bổ sung (Mẫu 02)", activity["supplements"]),
             ("Nghĩa vụ tài chính", activity["obligations"]), ("Cơ quan từ chối giải quyết", activity["agency_refusals"]),
             ("Rút hồ sơ", activity["withdrawals"]), ("Phát hiện quá hạn", activity["overdue_detected"]),
             ("Thư xin lỗi (Mẫu 04)", activity["apologies"]), ("Đã trả kết quả", activity["returned"]),
             ("Thanh toán: tiền mặt / chuyển khoản / trực tuyến",
              " / ".join(str(activity["payments"][m]) for m in METHODS))]
    facts_html = "".join(f"<tr><td class='name'>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in facts)
    plots = "".join(f"<figure><img src='{name}' alt='{esc(title)}'><figcaption>{esc(title)}</figcaption></figure>"
                    for name, title in PLOTS.items())
    days_off = ", ".join(f"{d['date']} ({d['name']})" for d in data["days_off"]) or "không"
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Một Cửa — mô phỏng {esc(data['from'])} … {esc(data['to'])}</title>
<style>body{{font-family:DejaVu Sans,Arial,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:3px 7px;text-align:right;font-size:13px}} td.name,th.name{{text-align:left}}
th small{{font-weight:normal;color:#555}} figure{{margin:1em 0}} img{{max-width:100%;border:1px solid #ddd}}</style></head>
<body><h1>Một Cửa — tuần làm việc mô phỏng</h1>
<p>Quận Gò Vấp và các phường; từ {esc(data['from'])} đến {esc(data['to'])}
(ngày nghỉ: {esc(days_off)}); hạt giống (seed) {data['seed']}, hệ số {data['scale']}, {len(data['units'])} đơn vị.
Dữ liệu mô phỏng; họ tên, số CCCD và số điện thoại là giả.</p>
<h2>Mẫu II.06a — tình hình giải quyết hồ sơ</h2>
<table><tr><th class='name'>Đơn vị</th>{head}<th>Tỷ lệ đúng hạn</th><th>(3)=(7)+(11)</th></tr>{rows}</table>
<h2>Hoạt động</h2><table>{facts_html}</table>
<h2>Biểu đồ</h2>{plots}
<h2>Phí, lệ phí (đồng)</h2>
<table><tr><th class='name'>Đơn vị</th><th>Tiền mặt</th><th>Chuyển khoản</th><th>Trực tuyến</th><th>Hoàn trả</th>
<th>Còn phải thu</th></tr>{fees_rows}</table>
<p>Số liệu đầy đủ: <a href="report.json">report.json</a>, <a href="ii06a.csv">ii06a.csv</a>.</p>
</body></html>
"""
