"""Every RPC declares its permission and every personal field says so, in the protos."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2

from closedloop.attribution.v1 import attribution_service_pb2
from closedloop.consent.v1 import consent_service_pb2, types_pb2
from closedloop.deal.v1 import deal_service_pb2
from closedloop.grpckit import permissions
from closedloop.grpckit.permissions import Permission
from closedloop.insights.v1 import insights_service_pb2
from closedloop.lead.v1 import lead_service_pb2
from closedloop.lead.v1 import types_pb2 as lead_types_pb2

ROOT = Path(__file__).resolve().parents[2]
CONVENTIONS = ROOT / "docs" / "api-conventions.md"
TABLE_START = "<!-- permissions table: generated from the protos -->"
TABLE_END = "<!-- end of the permissions table -->"

LEAD = "/closedloop.lead.v1.LeadService"
CONSENT = "/closedloop.consent.v1.ConsentService"


def everything() -> dict[str, str | None]:
    return permissions.permission_table(
        s.full_name for s in permissions.every_service()
    )


def test_the_walk_finds_every_service_of_the_protos() -> None:
    declared = {
        f"{package}.{service}"
        for proto in (ROOT / "protos").rglob("*.proto")
        for package in re.findall(
            r"^package ([\w.]+);", proto.read_text(), re.MULTILINE
        )
        for service in re.findall(r"^service (\w+)", proto.read_text(), re.MULTILINE)
    }
    found = {service.full_name for service in permissions.every_service()}
    assert found == declared
    assert len(found) == 5


def test_every_rpc_of_every_service_declares_a_known_permission() -> None:
    table = everything()
    undeclared = sorted(m for m, p in table.items() if p is None)
    unknown = sorted(
        f"{m}: {p}"
        for m, p in table.items()
        if p and p not in permissions.RPC_PERMISSIONS
    )
    assert not undeclared, f"RPCs without a permission: {undeclared}"
    assert not unknown, f"RPCs with an unknown permission: {unknown}"
    assert len(table) > 30


def test_the_permissions_issue_14_names_where_it_names_them() -> None:
    table = everything()
    assert table[f"{CONSENT}/EraseSubject"] == Permission.CONSENT_ERASE
    assert [m for m, p in table.items() if p == Permission.CONSENT_ERASE] == [
        f"{CONSENT}/EraseSubject"
    ]
    assert table[f"{CONSENT}/GrantConsent"] == Permission.CONSENT_WRITE
    assert table[f"{LEAD}/CaptureLead"] == Permission.LEAD_WRITE
    assert table[f"{LEAD}/GetLead"] == Permission.LEAD_READ
    assert table["/closedloop.deal.v1.DealService/OpenDeal"] == Permission.DEAL_WRITE
    assert (
        table["/closedloop.attribution.v1.AttributionService/RecordSpend"]
        == Permission.ATTRIBUTION_WRITE
    )
    assert table["/closedloop.insights.v1.InsightsService/GetFunnel"] == (
        Permission.INSIGHTS_READ
    )
    operator = sorted(m for m, p in table.items() if p == Permission.OPS_ADMIN)
    assert operator == [
        "/closedloop.attribution.v1.AttributionService/TrainModel",
        "/closedloop.insights.v1.InsightsService/ListProjections",
    ]
    assert Permission.PERSONAL_READ not in table.values()


def test_a_method_without_the_option_has_no_permission() -> None:
    check = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]
    assert permissions.method_permission(check) is None
    assert permissions.full_method_name(check) == "/grpc.health.v1.Health/Check"
    assert permissions.permission_table(["grpc.health.v1.Health"]) == {
        "/grpc.health.v1.Health/Check": None,
        "/grpc.health.v1.Health/List": None,
        "/grpc.health.v1.Health/Watch": None,
    }


def test_a_caller_holding_the_permission_is_allowed() -> None:
    decision = permissions.decide(
        {"lead:read", "lead:write"}, f"{LEAD}/CaptureLead", everything()
    )
    assert decision.allowed
    assert decision.permission == "lead:write"
    assert decision.reason == ""


def test_a_missing_permission_is_denied_naming_it() -> None:
    everyone_but = permissions.KNOWN_PERMISSIONS - {Permission.CONSENT_ERASE}
    decision = permissions.decide(everyone_but, f"{CONSENT}/EraseSubject", everything())
    assert not decision.allowed
    assert decision.permission == "consent:erase"
    assert decision.reason == "missing permission consent:erase"
    nobody = permissions.decide((), f"{LEAD}/GetLead", everything())
    assert not nobody.allowed
    assert nobody.reason == "missing permission lead:read"


def test_a_method_that_declares_no_permission_is_denied_to_everyone() -> None:
    table = everything() | permissions.permission_table(["grpc.health.v1.Health"])
    decision = permissions.decide(
        permissions.KNOWN_PERMISSIONS, "/grpc.health.v1.Health/Check", table
    )
    assert not decision.allowed
    assert decision.permission is None
    assert "declares no permission" in decision.reason
    unknown = permissions.decide(
        permissions.KNOWN_PERMISSIONS, f"{LEAD}/DropEverything", table
    )
    assert not unknown.allowed
    assert unknown.permission is None


def test_scopes_are_matched_exactly() -> None:
    table = everything()
    for scopes in (
        {"ops:admin"},
        {"lead:*"},
        {"LEAD:WRITE"},
        {"lead"},
        {"lead:write "},
    ):
        assert not permissions.decide(scopes, f"{LEAD}/CaptureLead", table).allowed


def test_personal_read_is_what_keeps_personal_fields() -> None:
    assert permissions.may_read_personal({"lead:read", "personal:read"})
    assert not permissions.may_read_personal({"lead:read", "ops:admin"})


def test_the_personal_fields_of_a_lead() -> None:
    assert permissions.personal_fields(lead_service_pb2.GetLeadResponse.DESCRIPTOR) == (
        "lead.email",
        "lead.name",
        "lead.company",
        "lead.qualification_reason",
        "lead.disqualification_detail",
    )
    assert permissions.personal_fields(lead_types_pb2.Touchpoint.DESCRIPTOR) == (
        "content",
        "attributes",
    )
    for response in (
        lead_service_pb2.CaptureLeadResponse,
        lead_service_pb2.FindLeadByEmailResponse,
        lead_service_pb2.MergeLeadsResponse,
    ):
        assert "email" in permissions.personal_fields(response.DESCRIPTOR)[0]


def test_the_personal_fields_of_consent_answers() -> None:
    evidence = {"evidence.request_origin", "evidence.detail"}
    assert set(permissions.personal_fields(types_pb2.ConsentChange.DESCRIPTOR)) == {
        "email",
        *evidence,
    }
    assert permissions.personal_fields(types_pb2.PreferenceChange.DESCRIPTOR) == (
        "email",
    )
    history = permissions.personal_fields(
        consent_service_pb2.GetConsentHistoryResponse.DESCRIPTOR
    )
    for changes in ("changes", "erasures"):
        assert {f"{changes}.email"} | {f"{changes}.{f}" for f in evidence} <= set(
            history
        )
    assert "preference_changes.email" in history
    check = permissions.personal_fields(
        consent_service_pb2.CheckConsentResponse.DESCRIPTOR
    )
    assert set(check) == {"decided_by.email"} | {f"decided_by.{f}" for f in evidence}


def test_keys_digests_and_ids_are_not_personal() -> None:
    change = set(permissions.personal_fields(types_pb2.ConsentChange.DESCRIPTOR))
    assert not {"email_digest", "lead_id", "subject_aggregate_id"} & change
    deal = permissions.personal_fields(deal_service_pb2.Deal.DESCRIPTOR)
    assert deal == ("name", "loss_detail")


def test_insights_and_attribution_answers_carry_no_personal_fields() -> None:
    for module in (insights_service_pb2, attribution_service_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            if message.name.endswith("Response"):
                assert permissions.personal_fields(message) == (), message.name


def test_a_message_that_holds_itself_is_walked_once() -> None:
    assert permissions.personal_fields(struct_pb2.Struct.DESCRIPTOR) == ()


def test_clearing_empties_the_personal_fields_and_keeps_the_rest() -> None:
    evidence = types_pb2.Evidence(
        notice_version="privacy-2024-03",
        request_origin="203.0.113.7",
        detail="by phone",
    )
    change = types_pb2.ConsentChange(
        change_id="c1", email="ada@example.com", email_digest="d1", evidence=evidence
    )
    answer = consent_service_pb2.GetConsentHistoryResponse(
        subject_aggregate_ids=["s1"],
        changes=[change, change],
        preference_changes=[types_pb2.PreferenceChange(change_id="p1", email="a@b.c")],
        next_page_token="t",  # noqa: S106 - a page token
    )
    permissions.clear_personal_fields(answer)
    expected_evidence = types_pb2.Evidence(notice_version="privacy-2024-03")
    expected_change = types_pb2.ConsentChange(
        change_id="c1", email_digest="d1", evidence=expected_evidence
    )
    assert answer == consent_service_pb2.GetConsentHistoryResponse(
        subject_aggregate_ids=["s1"],
        changes=[expected_change, expected_change],
        preference_changes=[types_pb2.PreferenceChange(change_id="p1")],
        next_page_token="t",  # noqa: S106 - a page token
    )


def test_clearing_a_lead_and_its_touchpoints() -> None:
    lead = lead_service_pb2.GetLeadResponse(
        lead=lead_service_pb2.Lead(
            lead_id="l1",
            email="ada@example.com",
            name="Ada",
            company="Engines",
            score=7,
        )
    )
    permissions.clear_personal_fields(lead)
    assert lead == lead_service_pb2.GetLeadResponse(
        lead=lead_service_pb2.Lead(lead_id="l1", score=7)
    )
    journey = lead_service_pb2.GetJourneyResponse(
        lead_id="l1",
        touchpoints=[
            lead_types_pb2.Touchpoint(
                touchpoint_id="t1",
                campaign="spring",
                content="hi ada",
                attributes={"phone": "+44 20 7946 0000"},
            )
        ],
    )
    permissions.clear_personal_fields(journey)
    assert journey == lead_service_pb2.GetJourneyResponse(
        lead_id="l1",
        touchpoints=[lead_types_pb2.Touchpoint(touchpoint_id="t1", campaign="spring")],
    )


def test_a_table_of_an_unknown_service_is_refused() -> None:
    with pytest.raises(KeyError):
        permissions.permission_table(["closedloop.lead.v1.NoSuchService"])


def permission_table_markdown() -> str:
    rows = [
        "| RPC | permission | personal fields in the answer |",
        "|---|---|---|",
    ]
    for service in permissions.every_service():
        for method in service.methods:
            personal = ", ".join(
                f"`{path}`" for path in permissions.personal_fields(method.output_type)
            )
            rows.append(
                f"| `{service.name}/{method.name}` | "
                f"`{permissions.method_permission(method)}` | {personal} |"
            )
    return "\n".join(rows)


def test_the_documented_permission_table_is_the_protos() -> None:
    page = CONVENTIONS.read_text()
    assert TABLE_START in page
    assert TABLE_END in page
    documented = page.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    expected = permission_table_markdown()
    assert documented == expected, (
        f"docs/api-conventions.md's permission table is out of date; between "
        f"{TABLE_START} and {TABLE_END} it should read:\n\n{expected}\n"
    )
    section = page.split("## Permissions", 1)[1].split("\n## ", 1)[0]
    for permission in permissions.KNOWN_PERMISSIONS:
        assert f"`{permission}`" in section, permission
