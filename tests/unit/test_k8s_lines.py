"""k8s_rest.take_lines: the watch stream's line splitter, whatever the chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidelog.broker.cluster.k8s_rest import take_lines


def split_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    buffer = bytearray()
    lines: list[bytes] = []
    for chunk in chunks:
        lines += take_lines(buffer, chunk)
    return lines, bytes(buffer)


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.data())
def test_any_chunking_gives_the_lines(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines) + b"tail"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert split_all(chunks) == (lines, b"tail")
