"""Make mmdet 3.3.0 importable on mmcv-lite (no compiled ops): mmcv.ops becomes a module whose names are inert
placeholders, except MultiScaleDeformableAttention, loaded from mmcv's own source with a stub extension loader (on CPU
it runs mmcv's pure-PyTorch multi_scale_deformable_attn_pytorch)."""
import importlib.util
import sys
import types

import mmcv
import mmcv.utils.ext_loader as ext_loader

ext_loader.load_ext = lambda name, funcs: types.SimpleNamespace(**{f: None for f in funcs})


class _Ops(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


class _Finder:
    """Any other mmcv.ops.<name> submodule: a placeholder module."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.startswith("mmcv.ops.") and name != "mmcv.ops.multi_scale_deform_attn":
            return importlib.util.spec_from_loader(name, _Loader())
        return None


class _Loader:
    def create_module(self, spec):
        module = _Ops(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder)
ops = _Ops("mmcv.ops")
ops.__path__ = []
sys.modules["mmcv.ops"] = ops
path = mmcv.__path__[0] + "/ops/multi_scale_deform_attn.py"
spec = importlib.util.spec_from_file_location("mmcv.ops.multi_scale_deform_attn", path)
msda = importlib.util.module_from_spec(spec)
sys.modules["mmcv.ops.multi_scale_deform_attn"] = msda
spec.loader.exec_module(msda)
ops.MultiScaleDeformableAttention = msda.MultiScaleDeformableAttention
ops.multi_scale_deformable_attn_pytorch = msda.multi_scale_deformable_attn_pytorch
