"""Operations: metrics, the status document, the admin web endpoint, ``dirgw status`` and TLS.

Each module stands alone and takes what it needs as arguments or callables; the composition
root (``gateway.service``) wires them together.
"""
