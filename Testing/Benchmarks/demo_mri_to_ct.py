"""An unpaired MRI -> CT demonstration: the CycleGAN between T1 of LGG patients and the one real head CT here.

    python Testing/Benchmarks/demo_mri_to_ct.py --work WORK [--inv3 Cranium.inv3] [--train] \
        --out Testing/Benchmarks/results/mri-to-ct.png

The CT is InVesalius's example project (Debian package `invesalius-examples`, GPL-2: fetched with
`apt-get download` when --inv3 is not given), read by `MRImputationLib.data.invesalius`. WORK must
hold `preprocessed/`, the LGG patients through `mrimpute preprocess` (as bench_lgg.py makes it).

1. A preprocessed folder WORK/mri-ct/ holds the 24 LGG training patients that the T1 <-> FLAIR
   CycleGAN saw in T1 (their T1 only: linked, not copied) and the CT as one more subject: its head
   mask (HU > -400, largest component) and percentile normalization inside it, in the manifest
   format `mrimpute preprocess` writes.
2. `mrimpute train WORK/mri-ct/preprocessed --contrasts T1,CT --config configs/demo-cyclegan-mri-ct.json`:
   unpaired by construction (no patient has both), a narrow U-Net CycleGAN at 256 px.
3. `mrimpute impute --model RUN --input T1=<an LGG test patient's T1>` writes its synthetic CT; the
   figure shows that T1, the synthetic CT and, for the look of real CT, the InVesalius CT.

No paired CT exists here: nothing is scored. It shows that the family trains and imputes across
modalities through the same commands, not that the CT is right.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "MRImputation"))

from MRImputationLib.core.io import read_volume, write_volume  # noqa: E402
from MRImputationLib.core.volume import Volume  # noqa: E402
from MRImputationLib.data.invesalius import read_inv3  # noqa: E402
from MRImputationLib.preprocessing.manifest import MANIFEST_FORMAT, MANIFEST_NAME, read_manifest  # noqa: E402
from MRImputationLib.preprocessing.normalization import fit_normalization  # noqa: E402
from MRImputationLib.training.sampling import unpaired_domains  # noqa: E402

CONFIG = HERE / "configs" / "demo-cyclegan-mri-ct.json"
SPLIT = HERE / "splits" / "lgg.json"
CT_SUBJECT = "invesalius-cranium-ct"


def fetch_inv3(work: Path) -> Path:
    """Cranium.inv3 from Debian's invesalius-examples package (downloaded into WORK/deb)."""
    target = work / "deb"
    found = sorted(target.rglob("Cranium.inv3"))
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "invesalius-examples"], cwd=target, check=True)
    deb = sorted(target.glob("invesalius-examples_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target / "extracted")], check=True)
    return sorted(target.rglob("Cranium.inv3"))[0]


def head_mask(ct: Volume) -> Volume:
    """Voxels above -400 HU, the largest connected component with its holes filled."""
    from scipy import ndimage

    labels, n = ndimage.label(ct.array > -400)
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    mask = labels == 1 + int(np.argmax(sizes))
    mask = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    return ct.with_array(mask.astype(np.uint8), contrast="brain_mask")


def build_folder(work: Path, inv3: Path, t1_subjects: list[str]) -> Path:
    """WORK/mri-ct/preprocessed: the T1-seen training patients (records limited to T1) and the CT subject."""
    lgg = work / "preprocessed"
    out = work / "mri-ct" / "preprocessed"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    records = {r["subject"]: r for r in read_manifest(lgg)["subjects"]}
    subjects = []
    for name in t1_subjects:
        record = json.loads(json.dumps(records[name]))
        (out / name).symlink_to((lgg / name).resolve())
        record["outputs"] = {"T1": record["outputs"]["T1"]}
        record["steps"]["normalization"] = {"T1": record["steps"]["normalization"]["T1"]}
        subjects.append(record)
    ct = read_inv3(inv3)
    mask = head_mask(ct)
    write_volume(ct, out / CT_SUBJECT / f"{CT_SUBJECT}_CT.nii.gz", dtype=np.float32)
    write_volume(mask, out / CT_SUBJECT / f"{CT_SUBJECT}_mask.nii.gz", dtype=np.uint8)
    params = fit_normalization(ct, mask)
    subjects.append({"subject": CT_SUBJECT, "reference": "CT", "contrasts": ["CT"], "status": "ok",
                     "steps": {"reference": "CT", "n4": {}, "registration": {}, "normalization": {"CT": params.to_dict()}},
                     "outputs": {"CT": f"{CT_SUBJECT}/{CT_SUBJECT}_CT.nii.gz"},
                     "mask": f"{CT_SUBJECT}/{CT_SUBJECT}_mask.nii.gz", "qc": [], "seconds": 0.0,
                     "source": str(inv3)})
    manifest = {**read_manifest(lgg), "format": MANIFEST_FORMAT, "source": f"LGG T1 + {inv3.name}",
                "subjects": subjects}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    split = {"format": "mrimputation-split/1", "seed": 0, "train": [*t1_subjects, CT_SUBJECT], "val": [], "test": []}
    (out.parent / "split.json").write_text(json.dumps(split, indent=1))
    return out


def mrimpute(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "MRImputation")}
    subprocess.run([sys.executable, "-m", "MRImputationLib", *args], check=True, env=env)


def figure(t1: Path, synthetic: Path, ct: Volume, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    given, made = read_volume(t1).array, read_volume(synthetic).array
    z = given.shape[0] // 2
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, image, title in ((axes[0], given[z], "given: T1 (an LGG test patient)"),
                             (axes[1], made[z], "synthetic CT (CycleGAN, unpaired)")):
        ax.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.5))
        ax.set_title(title, fontsize=10)
    ct_axial, aspect = _axial_middle(ct)
    axes[2].imshow(np.clip(ct_axial, -100, 200), cmap="gray", aspect=aspect)
    axes[2].set_title("a real head CT (another person, InVesalius)", fontsize=10)
    for ax in axes:
        ax.axis("off")
    fig.suptitle("Unpaired MRI -> CT: no paired CT exists here, so nothing is scored", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def _axial_middle(ct: Volume) -> tuple[np.ndarray, float]:
    """An axial slice through the lateral ventricles' level, and its pixel aspect (row / column spacing)."""
    import SimpleITK as sitk

    image = sitk.DICOMOrient(ct.to_sitk(), "LPS")
    oriented = sitk.GetArrayFromImage(image)
    spacing = image.GetSpacing()
    return oriented[int(oriented.shape[0] * 0.7)], spacing[1] / spacing[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--inv3", type=Path, help="Cranium.inv3 (default: fetched from Debian into WORK/deb)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "lgg")
    parser.add_argument("--train", action="store_true", help="build the folder and train (or resume) first")
    parser.add_argument("--out", type=Path, required=True, help="the figure (PNG)")
    args = parser.parse_args()
    inv3 = args.inv3 or fetch_inv3(args.work)
    run = args.work / "runs" / "demo-cyclegan-mri-ct"
    # The patients the T1 <-> FLAIR CycleGAN saw in T1 (training/sampling.py draws the same halves for seed 0).
    train = json.loads(SPLIT.read_text())["train"]
    t1_seen = sorted(s for s, d in unpaired_domains(train, json.loads(CONFIG.read_text())["seed"]).items() if d == 0)
    if args.train:
        if not (run / "config.json").exists():
            build_folder(args.work, inv3, t1_seen)
        resume = ["--resume"] if (run / "config.json").exists() else []
        mrimpute("train", str(args.work / "mri-ct" / "preprocessed"), "--out", str(run), "--config", str(CONFIG),
                 "--contrasts", "T1,CT", "--split", str(args.work / "mri-ct" / "split.json"), "--threads", "1",
                 "--progress", "none", *resume)
    patient = json.loads(SPLIT.read_text())["test"][0]
    t1 = args.data / patient / f"{patient}_t1.nii.gz"
    out = args.work / "mri-ct" / "imputed"
    mrimpute("impute", "--model", str(run), "--input", f"T1={t1}", "--out", str(out), "--replace", "--progress", "none")
    figure(t1, out / "CT_synthetic.nii.gz", read_inv3(inv3), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
