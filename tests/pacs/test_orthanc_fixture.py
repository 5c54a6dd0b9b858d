"""The Orthanc fixture itself: a real server holding what the suite uploads."""


def test_orthanc_holds_the_uploaded_studies(orthanc, sample_dicom):
    stats = orthanc.rest("GET", "/statistics")
    n_sample = len(list(sample_dicom.glob("*.dcm")))
    assert stats["CountStudies"] == 2
    assert stats["CountInstances"] == n_sample + len(orthanc.mr_files)
    plugins = orthanc.rest("GET", "/plugins")
    assert "dicom-web" in plugins
