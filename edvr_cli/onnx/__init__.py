"""EDVR as ONNX: `edvr export` writes the file, `edvr enhance --model model.onnx` runs it.

- export.py: the network to an ONNX graph (`export_onnx`), checked against PyTorch before it is
  written.
- runtime.py: an exported file as a network the enhance pipeline drives (`load_onnx_model`),
  through ONNX Runtime.
"""
