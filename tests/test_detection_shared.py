"""Detection and landmark quality on dlib's hand-labelled album (../shared/data; skipped without it).

Floors measured with bench/detection.py on 2026-11-25 (fast mode: recall 1.000, precision 1.000,
landmark error 0.027 of the inter-ocular distance on 43 labelled faces in 9 photos)."""

from __future__ import annotations

from bench.detection import measure, read_boxes


def test_fast_detector_recall_precision_and_landmarks(album_dir):
    from core.faces import FaceFinder

    folder = album_dir / "dlib_faces"
    labelled = read_boxes(folder / "testing_with_face_landmarks.xml")
    labelled.update(read_boxes(folder / "training_with_face_landmarks.xml"))
    m = measure(FaceFinder("fast"), labelled, folder)
    assert m["faces"] >= 40
    assert m["recall"] >= 0.95
    assert m["precision"] >= 0.95
    assert m["landmark_error"] <= 0.05


def test_no_face_in_the_dog_photo(album_dir):
    from core.faces import FaceFinder
    from core.photos import load_photo

    assert FaceFinder("fast").detect(load_photo(album_dir / "dlib_faces" / "dogs.jpg").rgb) == []
