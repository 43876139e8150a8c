"""The community satisfaction survey (SKM) and its index (IKM), per PermenPAN-RB No. 14 Tahun 2017.

This module is the feature's public face: other features import from here, never from its modules."""
