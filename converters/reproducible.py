"""Make the two files that TensorFlow and tensorflowjs write differently on every run byte-reproducible.

``saved_model/fingerprint.pb`` (a ``FingerprintDef``): five 64-bit hashes of the SavedModel's parts (the
saved_model.pb checksum, the regularised graph, signatures, object graph and checkpoint), a version, and a
``uuid`` that TF draws at random on every save ("not related to the hashes"). TF reads the file only to report
metrics when loading (``tf.saved_model.experimental.read_fingerprint`` does not even expose the uuid), and the
TFJS converter does not read it. So the file is kept (valid, with its hashes untouched) and only the uuid is
replaced by one derived from those hashes: the same SavedModel gets the same uuid, another SavedModel another.
The uuid keeps TF's form (a decimal 64-bit number).

``tfjs/model.json``: tensorflowjs writes the graph with ``MessageToDict``, and the order of each node's ``attr``
map follows a hash map inside TF's graph optimiser, which changes from run to run. Attributes are looked up by
name (by TFJS too), so their keys are sorted; nothing else is reordered (TFJS takes, e.g., its output order from
the order of the signature's outputs). The file is written back in tensorflowjs' own JSON format.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from contracts.atomic import write_bytes

FINGERPRINT = "fingerprint.pb"


def fingerprint_uuid(fingerprint) -> str:
    """A uuid in TF's form (decimal uint64) derived from a ``FingerprintDef``'s hashes and version."""
    parts = [fingerprint.saved_model_checksum, fingerprint.graph_def_program_hash, fingerprint.signature_def_hash,
             fingerprint.saved_object_graph_hash, fingerprint.checkpoint_hash, fingerprint.version.producer]
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return str(int.from_bytes(digest[:8], "big"))


def canonical_fingerprint(saved_model_dir: Path) -> bool:
    """Replace the random uuid of ``saved_model_dir/fingerprint.pb`` by :func:`fingerprint_uuid`; False where the
    SavedModel has no fingerprint (older TF writes none: nothing to fix)."""
    path = Path(saved_model_dir) / FINGERPRINT
    if not path.is_file():
        return False
    from tensorflow.core.protobuf import fingerprint_pb2

    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    fingerprint.uuid = fingerprint_uuid(fingerprint)
    write_bytes(path, fingerprint.SerializeToString(deterministic=True))
    return True


def sorted_attrs(obj):
    """``obj`` with the keys of every ``attr`` map sorted (recursively: attr values may hold functions with their
    own attrs); lists and other keys keep their order."""
    if isinstance(obj, list):
        return [sorted_attrs(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        value = sorted_attrs(value)
        if key == "attr" and isinstance(value, dict):
            value = dict(sorted(value.items()))
        out[key] = value
    return out


def canonical_model_json(model_json: Path) -> None:
    """Rewrite a TFJS ``model.json`` with every node's attributes in sorted order (module docstring)."""
    path = Path(model_json)
    data = json.loads(path.read_text())
    write_bytes(path, json.dumps(sorted_attrs(data)).encode())   # json.dump's default format, as tensorflowjs

