"""The fast v2c BER codec against pysnmp/pyasn1 as the reference (citydc.collectors.snmp.ber).

Messages are encoded with pysnmp's own codec and decoded by both; every varbind must come out
the same (OIDs as tuples, values as ``poller.to_python`` gives them). Requests we encode must be
byte-equal to pysnmp's. Mutated and random bytes may only ever raise ``BerError``, and whatever
our decoder accepts, pyasn1 must accept with the same result.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto import api, rfc1902, rfc1905

from citydc.collectors.snmp import ber
from citydc.collectors.snmp.poller import to_python

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
EXCEPTIONS = {rfc1905.NoSuchObject: ber.NO_SUCH_OBJECT, rfc1905.NoSuchInstance: ber.NO_SUCH_INSTANCE,
              rfc1905.EndOfMibView: ber.END_OF_MIB_VIEW}
UINT32 = st.integers(0, 2**32 - 1)

subid = st.one_of(st.integers(0, 127), st.integers(128, 2**32 - 1))
oids = st.one_of(
    st.tuples(st.integers(0, 1), st.integers(0, 39)),
    st.tuples(st.just(2), st.integers(0, 2**32 - 81)),
).flatmap(lambda head: st.lists(subid, max_size=20).map(lambda rest: (*head, *rest)))
values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(rfc1902.Integer32),
    st.binary(max_size=40).map(rfc1902.OctetString),
    oids.map(rfc1902.ObjectIdentifier),
    st.binary(min_size=4, max_size=4).map(rfc1902.IpAddress),
    UINT32.map(rfc1902.Counter32), UINT32.map(rfc1902.Gauge32), UINT32.map(rfc1902.TimeTicks),
    st.integers(0, 2**64 - 1).map(rfc1902.Counter64),
    st.binary(max_size=20).map(rfc1902.Opaque),
    st.sampled_from([rfc1905.noSuchObject, rfc1905.noSuchInstance, rfc1905.endOfMibView, univ.Null("")]),
)
varbind_lists = st.lists(st.tuples(oids, values), max_size=25)


def pysnmp_response(varbinds, request_id: int = 42, error_status: int = 0, error_index: int = 0,
                    community: str = "public") -> bytes:
    """Return a v2c Response message encoded by pysnmp/pyasn1."""
    pdu = V2C.GetResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_error_status(pdu, error_status)
    V2C.apiPDU.set_error_index(pdu, error_index)
    V2C.apiPDU.set_varbinds(pdu, varbinds)
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, community)
    V2C.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def reference(data: bytes) -> tuple[int, int, int, list]:
    """Decode like pysnmp's receive path; return (request-id, error-status, error-index, [(oid, value)])."""
    msg, _rest = decoder.decode(data, asn1Spec=V2C.Message())
    if int(V2C.apiMessage.get_version(msg)) != 1:
        raise PyAsn1Error("not v2c")
    pdu = V2C.apiMessage.get_pdu(msg)
    if not pdu.isSameTypeWith(V2C.GetResponsePDU()):
        raise PyAsn1Error("not a Response-PDU")
    return (int(V2C.apiPDU.get_request_id(pdu)), int(V2C.apiPDU.get_error_status(pdu)),
            int(pdu.getComponentByPosition(2)), list(V2C.apiPDU.get_varbinds(pdu)))


def assert_same(ours: ber.Response, ref: tuple[int, int, int, list]) -> None:
    request_id, status, index, varbinds = ref
    assert (ours.request_id, ours.error_status, ours.error_index) == (request_id, status, index)
    assert len(ours.varbinds) == len(varbinds)
    for (oid, value), (ref_oid, ref_value) in zip(ours.varbinds, varbinds, strict=True):
        assert oid == tuple(ref_oid)
        expected_exception = EXCEPTIONS.get(type(ref_value))
        if expected_exception is not None:
            assert value is expected_exception
        else:
            assert not isinstance(value, ber.SnmpException)
            assert to_python(value) == to_python(ref_value)
            assert type(to_python(value)) is type(to_python(ref_value))


@settings(max_examples=300, deadline=None)
@given(varbind_lists, st.integers(-(2**31), 2**31 - 1), st.integers(0, 18), st.integers(0, 30))
def test_decoder_equals_pysnmp_on_messages_pysnmp_encodes(varbinds, request_id, status, index):
    data = pysnmp_response(varbinds, request_id, status, index)
    assert_same(ber.decode_response(data), reference(data))


@settings(max_examples=200, deadline=None)
@given(st.lists(oids, min_size=1, max_size=30), st.integers(0, 2**31 - 1), st.integers(0, 5),
       st.integers(0, 200), st.binary(max_size=32))
def test_get_bulk_request_is_byte_equal_to_pysnmp(request_oids, request_id, non_repeaters, reps, community):
    pdu = V2C.GetBulkRequestPDU()
    V2C.apiBulkPDU.set_defaults(pdu)
    V2C.apiBulkPDU.set_request_id(pdu, request_id)
    V2C.apiBulkPDU.set_non_repeaters(pdu, non_repeaters)
    V2C.apiBulkPDU.set_max_repetitions(pdu, reps)
    V2C.apiBulkPDU.set_varbinds(pdu, [(o, V2C.Null("")) for o in request_oids])
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, community)
    V2C.apiMessage.set_pdu(msg, pdu)
    assert ber.encode_get_bulk(community, request_id, non_repeaters, reps, request_oids) == encoder.encode(msg)


@settings(max_examples=100, deadline=None)
@given(st.lists(oids, min_size=1, max_size=30), st.integers(0, 2**31 - 1))
def test_get_request_is_byte_equal_to_pysnmp(request_oids, request_id):
    pdu = V2C.GetRequestPDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_varbinds(pdu, [(o, V2C.Null("")) for o in request_oids])
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, b"c")
    V2C.apiMessage.set_pdu(msg, pdu)
    assert ber.encode_get(b"c", request_id, request_oids) == encoder.encode(msg)


@st.composite
def mutated(draw):
    data = bytearray(pysnmp_response(draw(varbind_lists.filter(bool))))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data.insert(i, draw(st.integers(0, 255)))
        elif data:
            del data[i]
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_raise_berror_or_decode_exactly_as_pysnmp(data):
    try:
        ours = ber.decode_response(data)
    except ber.BerError as exc:
        assert exc.reason in ("truncated", "decode")
        assert "offset" in str(exc) or "ends" in str(exc)
        return
    assert_same(ours, reference(data))  # accepted by us: pyasn1 must accept it and agree


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_berror(data):
    try:
        ber.decode_response(data)
    except ber.BerError as exc:
        assert exc.reason in ("truncated", "decode")


def test_every_truncation_of_a_response_is_reported_as_truncated():
    data = pysnmp_response([((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, k), rfc1902.Counter64(2**40 + k)) for k in range(5)])
    for cut in range(len(data)):
        with pytest.raises(ber.BerError) as exc:
            ber.decode_response(data[:cut])
        assert exc.value.reason == "truncated", (cut, str(exc.value))


@pytest.mark.parametrize(("hex_value", "message"), [
    ("4105 0100000000", "Counter32 value 4294967296 out of range"),   # one above 2^32-1
    ("4101 ff", "Counter32 value -1 out of range"),                   # negative: agent forgot the 00 pad
    ("4609 010000000000000000", "Counter64 value 18446744073709551616 out of range"),
    ("0205 0080000000", "Integer32 value 2147483648 out of range"),
    ("4003 0a0000", "IpAddress has 3 octets, expected 4"),
    ("8201 00", "tag 0x82 must be empty"),
    ("4701 01", "unknown varbind value tag 0x47"),
    ("0602 8001", "sub-identifier starts with 0x80"),
    ("0600", "empty OBJECT IDENTIFIER"),
])
def test_bad_values_name_the_offset_and_what_was_expected(hex_value, message):
    value = bytes.fromhex(hex_value.replace(" ", ""))
    varbind = b"\x06\x03\x2b\x06\x01" + value
    varbind = bytes((0x30, len(varbind))) + varbind
    vbl = bytes((0x30, len(varbind))) + varbind
    pdu = bytes.fromhex("020101020100020100") + vbl
    pdu = bytes((0xA2, len(pdu))) + pdu
    body = bytes.fromhex("020101040161") + pdu
    with pytest.raises(ber.BerError) as exc:
        ber.decode_response(bytes((0x30, len(body))) + body)
    assert exc.value.reason == "decode"
    assert message in str(exc.value) and "offset" in str(exc.value)


def test_structural_errors_are_named():
    good = pysnmp_response([((1, 3, 6, 1), rfc1902.Integer32(1))])
    with pytest.raises(ber.BerError, match="octets after the SNMP message"):
        ber.decode_response(good + b"\x00")
    v1 = bytearray(good)
    v1[4] = 0  # version 0 = SNMPv1
    with pytest.raises(ber.BerError, match="version field 0, expected 1"):
        ber.decode_response(bytes(v1))
    request = ber.encode_get(b"public", 1, [(1, 3, 6, 1)])
    with pytest.raises(ber.BerError, match=r"expected Response-PDU \(tag 0xa2\), got tag 0xa0"):
        ber.decode_response(request)
    indefinite = bytearray(good)
    indefinite[1] = 0x80
    with pytest.raises(ber.BerError, match="indefinite length"):
        ber.decode_response(bytes(indefinite))


def test_error_status_is_decoded_with_its_name():
    resp = ber.decode_response(pysnmp_response([((1, 3, 6, 1), rfc1902.Integer32(1))], error_status=1,
                                               error_index=1))
    assert (resp.error_status, resp.error_index, resp.error_name) == (1, 1, "tooBig")


def test_errors_never_quote_the_community():
    secret = "s3cret-community"
    data = pysnmp_response([((1, 3, 6, 1), rfc1902.Counter32(1))], community=secret)
    for cut in range(len(data)):
        try:
            ber.decode_response(data[:cut])
        except ber.BerError as exc:
            assert secret not in str(exc) and secret[:4] not in str(exc)


def test_encode_oid_rejects_what_cannot_be_encoded():
    for bad in [(1,), (3, 1), (1, 40), (1, 3, -1)]:
        with pytest.raises(ValueError, match="OID"):
            ber.encode_oid(bad)
