"""Replaces PyInstaller's hook for PySide6.QtCore: the same collection, minus the Qt plugins and
translations of bundle_rules.DROP_PATTERNS, removed *before* PyInstaller follows their library
dependencies (dropping them afterwards would leave the libraries they alone pull in, e.g. QtNetwork
by the VNC platform plugin, GTK by the gtk3 theme)."""

from bundle_rules import collect_qt_module

hiddenimports, binaries, datas = collect_qt_module("PySide6.QtCore")
