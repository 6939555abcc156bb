#!/usr/bin/env python3
"""Writes a safetensors model's tensors as a torch.save checkpoint, with Python's own pickle and
zipfile modules and no PyTorch: stand-ins named like torch's rebuild functions and storage types
reduce the way torch's tensors do, so data.pkl holds what torch.save's pickler emits (memo puts on
every object, batches of 1000 items, an OrderedDict with _metadata state, nn.Parameter wrappers).

  torch_save.py SRC OUT [--protocol N] [--one-storage]
    SRC            a model directory (its *.safetensors, in name order) or one .safetensors file
    --protocol N   pickle protocol (torch.save uses 2)
    --one-storage  all tensors of a dtype share one storage, each at its own offset
    --torch        write with the real torch.save (PyTorch must be importable)
    --shards N     with --torch: OUT is a directory, written as transformers shards a .bin model:
                   pytorch_model-0000K-of-0000N.bin, one torch.save each, and
                   pytorch_model.bin.index.json mapping each tensor to its shard
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

STORAGE = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
           "F64": "DoubleStorage", "I64": "LongStorage", "I32": "IntStorage",
           "I16": "ShortStorage", "I8": "CharStorage", "U8": "ByteStorage", "BOOL": "BoolStorage"}
SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
        "BOOL": 1}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = []
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, end = e["data_offsets"]
        out.append((name, e["dtype"], tuple(e["shape"]), data[b:end]))
    return out


def source_tensors(src):
    if os.path.isdir(src):
        files = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
        paths = [os.path.join(src, f) for f in files]
    else:
        paths = [src]
    tensors = []
    for p in paths:
        tensors += read_safetensors(p)
    return tensors


# ---- stand-ins that pickle as torch's own names
mod_torch = types.ModuleType("torch")
mod_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = mod_torch
sys.modules["torch._utils"] = mod_utils
mod_torch._utils = mod_utils


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called")


def _rebuild_parameter(*args):
    raise RuntimeError("never called")


for fn in (_rebuild_tensor_v2, _rebuild_parameter):
    fn.__module__ = "torch._utils"
    setattr(mod_utils, fn.__name__, fn)
for cls_name in STORAGE.values():
    cls = type(cls_name, (), {"__module__": "torch"})
    setattr(mod_torch, cls_name, cls)


class Storage:
    def __init__(self, key, dtype, data):
        self.key, self.dtype, self.data = key, dtype, data


class Tensor:
    def __init__(self, storage, offset, shape):
        self.storage, self.offset, self.shape = storage, offset, shape

    def stride(self):
        s, out = 1, []
        for d in reversed(self.shape):
            out.append(s)
            s *= d
        return tuple(reversed(out))

    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, (self.storage, self.offset, self.shape, self.stride(), False,
                                     collections.OrderedDict()))


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            n = len(obj.data) // SIZE[obj.dtype]
            return ("storage", getattr(mod_torch, STORAGE[obj.dtype]), obj.key, "cpu", n)
        return None


def save_standin(tensors, out, protocol, one_storage):
    sd = collections.OrderedDict()
    storages = []
    if one_storage:
        by_dtype = {}
        for name, dtype, shape, data in tensors:
            by_dtype.setdefault(dtype, []).append((name, shape, data))
        for dtype, items in sorted(by_dtype.items()):
            st = Storage(str(len(storages)), dtype, b"".join(d for _, _, d in items))
            storages.append(st)
            off = 0
            for name, shape, data in items:
                sd[name] = Tensor(st, off, shape)
                off += len(data) // SIZE[dtype]
        sd = collections.OrderedDict((name, sd[name]) for name, _, _, _ in tensors)
    else:
        for i, (name, dtype, shape, data) in enumerate(tensors):
            st = Storage(str(i), dtype, data)
            storages.append(st)
            t = Tensor(st, 0, shape)
            sd[name] = Parameter(t) if i % 2 else t
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(sd)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        def member(name, data):  # fixed dates: the same bytes every run
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        member("archive/data.pkl", buf.getvalue())
        member("archive/byteorder", "little")
        for st in storages:
            member("archive/data/" + st.key, st.data)
        member("archive/version", "3\n")


def save_torch(tensors, out, shards=0):
    for name in ("torch", "torch._utils"):
        del sys.modules[name]
    import torch
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}

    def state_dict(part):
        sd = collections.OrderedDict()
        for name, dtype, shape, data in part:
            t = torch.frombuffer(bytearray(data), dtype=dtypes[dtype]) if data else \
                torch.empty(0, dtype=dtypes[dtype])
            sd[name] = t.reshape(shape).clone()
        return sd

    if not shards:
        torch.save(state_dict(tensors), out)
        return
    os.makedirs(out, exist_ok=True)
    per = -(-len(tensors) // shards)
    weight_map = {}
    for k in range(shards):
        part = tensors[k * per:(k + 1) * per]
        fname = "pytorch_model-%05d-of-%05d.bin" % (k + 1, shards)
        torch.save(state_dict(part), os.path.join(out, fname))
        for name, _, _, _ in part:
            weight_map[name] = fname
    total = sum(len(data) for _, _, _, data in tensors)
    with open(os.path.join(out, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def main(argv):
    args, opts, i = [], {}, 1
    while i < len(argv):
        if argv[i] in ("--protocol", "--shards"):
            opts[argv[i]] = int(argv[i + 1])
            i += 2
        else:
            if not argv[i].startswith("--"):
                args.append(argv[i])
            i += 1
    protocol = opts.get("--protocol", 2)
    shards = opts.get("--shards", 0)
    if shards and "--torch" not in argv:
        sys.exit("--shards needs --torch")
    if len(args) != 2:
        sys.exit(__doc__)
    tensors = source_tensors(args[0])
    if "--torch" in argv:
        save_torch(tensors, args[1], shards)
    else:
        save_standin(tensors, args[1], protocol, "--one-storage" in argv)


if __name__ == "__main__":
    main(sys.argv)
