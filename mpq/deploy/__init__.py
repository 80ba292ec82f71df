"""Deployment: a searched configuration as integer weights on disk, an integer reference forward, and ONNX.

``model`` lowers a supernet at one configuration to a plain list of operations (BN folded, weights as
integer codes), ``pack`` stores codes at their bit-width, ``integer`` runs the reference forward in
PyTorch, ``onnx_export`` builds the Q/DQ graph and runs it in ONNX Runtime (the optional ``deploy`` extra),
``evaluate`` compares the three forms and ``release`` writes the supernets that ship with the repository.
"""
