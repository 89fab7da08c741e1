"""The API and event reference: rendered from the protos' comments, nothing dropped."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from apps.protodocs import Renderer, compile_descriptors, write_reference

ROOT = Path(__file__).resolve().parents[2]

SERVICE_PROTO = """
syntax = "proto3";

package example.v1;

import "example/v1/types.proto";
import "google/protobuf/timestamp.proto";

// Counts things.
//
// A second paragraph | with a pipe.
service CounterService {
  // Adds one to a counter.
  rpc Increment(IncrementRequest) returns (IncrementResponse);
  rpc Watch(IncrementRequest) returns (stream IncrementResponse);
}

message IncrementRequest {
  // Which counter.
  string counter_id = 1;
  map<string, string> labels = 2;
  oneof by {
    // By one.
    bool one = 3;
    int64 many = 4;
  }
  optional double weight = 5;  // Defaults to 1.
  repeated Colour colours = 6;
  google.protobuf.Timestamp at = 7;

  message Detail {
    string note = 1;
  }

  enum Mode {
    MODE_UNSPECIFIED = 0;
  }
}

message IncrementResponse {
  int64 value = 1;
}
"""

TYPES_PROTO = """
syntax = "proto3";

package example.v1;

// Colours of a counter.
enum Colour {
  // Never sent.
  COLOUR_UNSPECIFIED = 0;
  COLOUR_RED = 1;
}
"""

EVENTS_PROTO = """
syntax = "proto3";

package example.v1;

import "shared/v1/amount.proto";

// Events of the example context.

// A counter went up.
message CounterIncremented {
  string counter_id = 1;
  shared.v1.Amount amount = 2;
  Step step = 3;
}

// Part of an event, never published on its own.
message Step {
  int64 size = 1;
}
"""

SHARED_PROTO = """
syntax = "proto3";

package shared.v1;

message Amount {
  int64 units = 1;
}
"""


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    root = tmp_path / "protos"
    for name, text in {
        "example/v1/counter_service.proto": SERVICE_PROTO,
        "example/v1/types.proto": TYPES_PROTO,
        "example/v1/events.proto": EVENTS_PROTO,
        "shared/v1/amount.proto": SHARED_PROTO,
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def example_page(protos: Path) -> str:
    return Renderer(compile_descriptors(protos)).pages()["example.v1.md"]


def test_one_page_per_package_and_an_index(protos: Path, tmp_path: Path) -> None:
    out = tmp_path / "reference"
    out.mkdir()
    (out / "gone.v1.md").write_text("a package that no longer exists")

    written = write_reference(protos, out)

    assert sorted(p.name for p in written) == [
        "example.v1.md",
        "index.md",
        "shared.v1.md",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    index = (out / "index.md").read_text()
    assert "| [`example.v1`](example.v1.md) | `CounterService` | 1 | 4 | 2 |" in index


def test_services_list_their_rpcs_with_comments(example_page: str) -> None:
    assert "### CounterService { #example.v1.CounterService }" in example_page
    assert "Counts things.\n\nA second paragraph | with a pipe." in example_page
    assert (
        "| `Increment` | [`IncrementRequest`](#example.v1.IncrementRequest)"
        " | [`IncrementResponse`](#example.v1.IncrementResponse)"
        " | Adds one to a counter. |"
    ) in example_page
    assert "| stream [`IncrementResponse`](#example.v1.IncrementResponse) |" in (
        example_page
    )


def test_fields_show_their_types_and_comments(example_page: str) -> None:
    assert "| `counter_id` | 1 | `string` | Which counter. |" in example_page
    assert "| `labels` | 2 | map<`string`, `string`> |  |" in example_page
    assert "| `one` | 3 | `bool` | One of `by`. By one. |" in example_page
    assert "| `many` | 4 | `int64` | One of `by`. |" in example_page
    assert "| `weight` | 5 | optional `double` | Defaults to 1. |" in example_page
    assert "| `colours` | 6 | repeated [`Colour`](#example.v1.Colour) |" in (
        example_page
    )
    assert "[`google.protobuf.Timestamp`](https://protobuf.dev/" in example_page
    assert "### IncrementRequest.Detail { #example.v1.IncrementRequest.Detail }" in (
        example_page
    )
    assert "IncrementRequest.LabelsEntry" not in example_page


def test_events_have_their_section_subject_and_cross_package_links(
    example_page: str,
) -> None:
    events = example_page.split("## Events")[1].split("## Messages", maxsplit=1)[0]
    assert "### CounterIncremented { #example.v1.CounterIncremented }" in events
    assert "Subject: `example.v1.CounterIncremented`" in events
    assert "A counter went up." in events
    assert "[`shared.v1.Amount`](shared.v1.md#shared.v1.Amount)" in events
    assert "### Step" not in events
    assert "### Step { #example.v1.Step }" in example_page
    assert "- `example/v1/events.proto`: Events of the example context." in (
        example_page
    )


def test_enums_list_their_values(example_page: str) -> None:
    enums = example_page.split("## Enums")[1]
    assert "### Colour { #example.v1.Colour }\n\nColours of a counter." in enums
    assert "| `COLOUR_UNSPECIFIED` | 0 | Never sent. |" in enums
    assert "### IncrementRequest.Mode { #example.v1.IncrementRequest.Mode }" in enums


def test_every_rpc_of_the_real_protos_is_in_the_reference() -> None:
    files = compile_descriptors(ROOT / "protos")
    pages = Renderer(files).pages()
    for proto in files:
        page = pages[f"{proto.package}.md"]
        for service in proto.service:
            for method in service.method:
                assert f"| `{method.name}` |" in page, (service.name, method.name)
        for message in proto.message_type:
            assert f"### {message.name} {{ #{proto.package}." in page
