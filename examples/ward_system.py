"""A ward's own software, talking to Một Cửa through the gateway (a runnable example).

It receives a dossier at the ward's desk, follows the ward's events, accepts its own step and
signs the result (as the ward's systems publish their events), collects the fee, and hands the
result back to the citizen:

    python examples/ward_system.py --target localhost:50051 --token "$(motcua gateway token issue 000.03.20.H29)" \
        --unit 000.03.20.H29 --key-id "$KEY_ID" --key-file "keys/$KEY_ID.pem"

(``KEY_ID`` as printed by ``motcua keys generate 000.03.20.H29 --keys-dir keys``: the ward signs
the events it publishes with its own key, and the gateway refuses unsigned ones.)
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timezone

from motcua_client import Client, GatewayError, load_signing_key

APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ, Phường 3",
             "phone": "0903123456"}
DOSSIER = {"procedure_code": "1.004873",      # Cấp Giấy xác nhận tình trạng hôn nhân: 3 working days
           "applicant": APPLICANT,
           "documents": [{"name": "Tờ khai cấp Giấy xác nhận tình trạng hôn nhân (theo mẫu)", "form": "original"},
                         {"name": "Giấy tờ tùy thân của người yêu cầu (xuất trình)", "form": "original"}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--token", required=True, help="the ward's token: motcua gateway token issue UNIT")
    parser.add_argument("--unit", help="the ward's unit code (with --key-id and --key-file: its events signed)")
    parser.add_argument("--key-id", help="the ward's signing key id (motcua keys generate|rotate)")
    parser.add_argument("--key-file", help="the ward's private key (PEM), kept by the ward's system only")
    parser.add_argument("--official", default="Trần Thị Hoa")
    parser.add_argument("--timeout", type=float, default=60, help="give up after this many seconds")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    signing = {}
    if args.key_file:
        signing = {"unit": args.unit, "key_id": args.key_id, "signing_key": load_signing_key(args.key_file)}
    with Client(args.target, args.token, **signing) as client:
        dossier = client.receive(args.official, DOSSIER)
        print(f"received {dossier.code}: appointment {dossier.appointment_date}")
        position, step = 0, None
        while time.monotonic() < deadline:
            # Follow the ward's feed from the last position seen: after a disconnection, nothing is missed.
            for position, event in client.follow(position, timeout=2):
                if event.dossier_code != dossier.code:
                    continue
                print(f"  event {position}: {event.type}")
                if event.type == "dossier.processed":
                    return collect_and_return(client, args.official, dossier.code)
            if step is None:
                step = own_step(client, args.official, dossier.code)
                if step is not None:
                    sign(client, args.official, dossier.code, step)
    print("gave up: the dossier was not processed in time", file=sys.stderr)
    return 1


def own_step(client: Client, official: str, code: str) -> int | None:
    try:
        workflow = client.workflow(official, code)
    except GatewayError as error:
        print(f"  routing has not got it yet ({error.code.name})")
        return None
    return workflow.steps[0].id


def sign(client: Client, official: str, code: str, step: int) -> None:
    now = datetime.now(timezone.utc).isoformat()
    key = uuid.uuid4().hex
    acks = client.publish([
        {"idempotency_key": f"{key}-1", "type": "step_accepted", "dossier_code": code, "step": step,
         "official": official, "occurred_at": now},
        {"idempotency_key": f"{key}-2", "type": "result_signed", "dossier_code": code, "step": step,
         "official": "Chủ tịch UBND phường", "occurred_at": now, "note": "Đã ký giấy xác nhận"}])
    for ack in acks:
        print(f"  published {ack.idempotency_key}: outcome {ack.outcome} {ack.field} {ack.reason}".rstrip())


def collect_and_return(client: Client, official: str, code: str) -> int:
    owed = client.get(official, code).fees_outstanding
    if owed:
        client.pay(official, code, owed)
        print(f"  collected {owed} VND")
        while client.get(official, code).fees_outstanding:
            time.sleep(0.2)
    returned = client.return_result(official, code, collected_by=APPLICANT["name"])
    print(f"returned {code}: {returned.result_class}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
