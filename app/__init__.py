"""Agelapse's desktop application (PySide6), built on the engine in ``core``.

Modules (each small; the main window only wires them together):

- ``main``          QApplication, command line, ``main()``
- ``main_window``   menus, docks, toolbar: connects the parts below
- ``tasks``         the one helper for background work (thread pools, cancellation, stale results)
- ``face_process``  dlib in helper processes (it holds the GIL: on a thread it would freeze the GUI)
- ``finders``       which face finder a task uses (a helper process's, or the thread's own)
- ``imaging``       numpy <-> QImage at the boundary, the photo pyramid
- ``album_model``   the photo list model and the lazy thumbnail loader; ``album_view`` tree + grid
- ``scanning``      the album's background scan; ``scan_status`` its progress in the status bar
- ``photo_view``    the zoomable photo (QGraphicsView), face boxes, drawing a box, the aged overlay
- ``landmark_items`` draggable landmarks, region outlines, forehead edge, the undo command
- ``editor``        the shown photo and its faces: loading, detection, edits saved to the catalog
- ``aging``         models, the batched age groups of a face, age estimation, fast preview frames
- ``preview``       the timeline frames at display resolution (``core.render``'s renderer)
- ``age_presenter`` the selected face's ages on the timeline, the photo and the face panel
- ``timeline``      the strip of age groups with its marker and handle
- ``face_panel``    the selected face's panel; ``regions_panel`` its strength sliders and toggles
- ``export_dialog`` the export dialog: builds ``core.export_jobs``'s options, shows its progress
- ``settings``      QSettings-backed preferences and their dialog
- ``banner``        the inline, non-blocking message banner
- ``theme``         the dark palette
- ``state``         Qt-free helpers: strengths as stored, the forehead handle
- ``_compat``       a work-around for PySide6 6.12 on Python 3.11 (see there)

The GUI imports ``core`` and never ``torch`` or ``training``.
"""

from app._compat import protect_none as _protect_none

_protect_none()  # before any Qt call: PySide6 6.12 on Python 3.11 loses references to None, True, False
