"""Warden: multi-tenant YOLO inference and hardened training on personal data.

Importing ``warden`` is cheap: it loads no server, database or model code. Use
``warden.detection`` for the detection library.
"""

__version__ = "0.1.0"
