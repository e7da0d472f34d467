"""The words the services share, each with the Vietnamese label an official reads on a form or a
report: national dossier statuses, channels, result classes, document forms. One list each."""
from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """The national status codes of a dossier (domain §3)."""
    SUBMITTED_ONLINE = 1
    RECEIVED = 2
    REFUSED = 3
    PROCESSING = 4
    SUPPLEMENT_REQUESTED = 5
    OBLIGATION_REQUESTED = 6
    WITHDRAWN = 7
    STOPPED = 8
    PROCESSED = 9
    RETURNED = 10


STATUS_VI = {
    Status.SUBMITTED_ONLINE: "Mới nộp trực tuyến, chờ tiếp nhận",
    Status.RECEIVED: "Đã tiếp nhận",
    Status.REFUSED: "Từ chối tiếp nhận",
    Status.PROCESSING: "Đang giải quyết",
    Status.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung hồ sơ",
    Status.OBLIGATION_REQUESTED: "Chờ thực hiện nghĩa vụ tài chính",
    Status.WITHDRAWN: "Công dân rút hồ sơ",
    Status.STOPPED: "Dừng xử lý",
    Status.PROCESSED: "Đã giải quyết xong, chờ trả kết quả",
    Status.RETURNED: "Đã trả kết quả",
}

#: How a dossier reached the desk, with the national channel code.
CHANNELS = {"in_person": 1, "online": 2, "post": 3}
CHANNEL_VI = {"in_person": "Trực tiếp", "online": "Trực tuyến", "post": "Bưu chính công ích"}

#: The result class of a resolved dossier or of one agency's step (early / on time / late).
RESULTS = ("early", "on_time", "late")
RESULT_VI = {"early": "Trước hạn", "on_time": "Đúng hạn", "late": "Quá hạn"}

#: How a document is handed in, strongest first, with its printed label.
DOCUMENT_FORMS = ("original", "certified_copy", "copy")
DOCUMENT_FORM_VI = {"original": "Bản chính", "certified_copy": "Bản sao có chứng thực", "copy": "Bản sao"}
# A stronger form satisfies a requirement for a weaker one: an original serves as a copy.
DOCUMENT_FORM_STRENGTH = {"original": 3, "certified_copy": 2, "copy": 1}


def result_vi(result: str) -> str:
    return RESULT_VI[result]


def document_form_vi(form: str, *, lower: bool = False) -> str:
    label = DOCUMENT_FORM_VI[form]
    return label[0].lower() + label[1:] if lower else label
