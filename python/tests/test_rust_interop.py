"""One file, Python and Rust processes: the Rust crate's own program (eh-checkpoints, path in
$EHCS_CLI; .ci/python.sh builds it) reads what Python wrote and the other way round, with the
names folded the same way, and a Rust release fences a fenced Python store."""

import json
import os
import subprocess

import pytest

import eventhubs_checkpointstore_sqlite as ehcs
from conftest import checkpoint, ownership

CLI = os.environ.get("EHCS_CLI")
pytestmark = pytest.mark.skipif(not CLI, reason="EHCS_CLI (the eh-checkpoints binary) not given")

# The Python side spells the names one way, the Rust side another: one group.
PY = dict(ns="MyNS.ServiceBus.Windows.NET", hub="Telemetry", group="$Default")
RUST = ["--namespace", "myns.servicebus.windows.net", "--hub", "TELEMETRY", "--group", "$DEFAULT"]


def cli(db, *args):
    out = subprocess.run(
        [CLI, "--db", db, *args], check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout


def test_positions_and_owners_read_both_ways(db):
    s = ehcs.SqliteCheckpointStore(db, fenced=True)
    won = s.claim_ownership([ownership(str(p), owner="py-1", **PY) for p in range(4)])
    assert len(won) == 4
    s.update_checkpoint(checkpoint("0", "8591964920", 960180, **PY))

    listed = json.loads(cli(db, "--json", "ownership", "list", *RUST))
    assert [(o["partition_id"], o["owner_id"]) for o in listed] == [(str(p), "py-1") for p in range(4)]
    assert {o["etag"] for o in listed} == {w["etag"] for w in won}
    (c,) = json.loads(cli(db, "--json", "checkpoints", "list", *RUST))
    assert (c["partition_id"], c["offset"], c["sequence_number"]) == ("0", "8591964920", 960180)

    # Rust writes a position; Python reads it.
    cli(db, "checkpoints", "set", *RUST, "--partition", "1", "--offset", "77", "--sequence-number", "7")
    by = {c["partition_id"]: c for c in s.list_checkpoints(PY["ns"], PY["hub"], PY["group"])}
    assert (by["1"]["offset"], by["1"]["sequence_number"]) == ("77", 7)

    # Rust releases partition 2: the fenced Python store may no longer write it, and sees it
    # released ("" owner), claimable again with the listed etag.
    cli(db, "ownership", "release", *RUST, "--partition", "2", "--yes")
    with pytest.raises(ehcs.OwnershipLostError):
        s.update_checkpoint(checkpoint("2", "1", 1, **PY))
    s.update_checkpoint(checkpoint("3", "3", 3, **PY))  # the others are still held
    owners = {o["partition_id"]: o for o in s.list_ownership(PY["ns"], PY["hub"], PY["group"])}
    assert owners["2"]["owner_id"] == ""
    (again,) = s.claim_ownership([dict(owners["2"], owner_id="py-1")])
    s.update_checkpoint(checkpoint("2", "2", 2, **PY))
    listed = json.loads(cli(db, "--json", "ownership", "list", *RUST))
    assert [o["owner_id"] for o in listed] == ["py-1"] * 4
