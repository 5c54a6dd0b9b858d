"""Screenshots of a fused CT-MRI phantom case with a cage plan at L4-L5 (docs/images/fusion_*.png).

Run under Xvfb: xvfb-run -a python tools/fusion_screenshot.py BLEND.png CHECKER.png
"""
import sys, numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication.instance() or QApplication(sys.argv)
from spineplan.core.phantom import make_phantom
from spineplan.core.phantom_mri import make_mri_phantom, default_unit_motion
from spineplan.core.dicom.load import write_volume
from spineplan.qt.main_window import MainWindow
import tempfile
d = tempfile.mkdtemp()
ph = make_phantom(spacing=1.5)
mp = make_mri_phantom(ph, spacing_mm=1.5, unit_motion=default_unit_motion(ph))
write_volume(mp.mri, d + "/mri.nii.gz")
s = QSettings(d + "/s.ini", QSettings.IniFormat); s.setValue("autosave_dir", d + "/auto")
w = MainWindow(settings=s, with_3d=False)
w.resize(1400, 950); w.show()
w.scene.set_volume(ph.ct); w.set_labels(ph.labels); w.settle(120)
w.level_box.setCurrentText("L4-L5"); w.side_box.setCurrentText("left"); w.proc_box.setCurrentText("cage")
w.propose_plan(); w.settle(120)
p = w.fusion_panel
p.open_mri(d + "/mri.nii.gz", block=True); p.wait(300)
w.panel.setCurrentWidget(p)
p.opacity_slider.setValue(55)
w.scene.set_cursor(np.array(ph.truth["discs"]["L4-L5"]["center_lps"]))
for _ in range(20): app.processEvents()
print(p.quality.text())
w.screenshot().save(sys.argv[1])
p.display_buttons["checkerboard"].setChecked(True)
for _ in range(20): app.processEvents()
w.screenshot().save(sys.argv[2])
