"""What marl.storage's crash-safe filesystem costs per checkpoint upload, against pyarrow's
LocalFileSystem: `python benchmarks/storage.py CHECKPOINT_FOLDER [N]` copies the folder N
times (default 100) with each, interleaved so that both see the same load, and prints the
median and 90th percentile."""
import statistics, sys, tempfile, time, shutil
from pathlib import Path
import pyarrow.fs
from marl.storage import atomic_local_filesystem
src = Path(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
out = Path(tempfile.mkdtemp())
fss = {"LocalFileSystem": pyarrow.fs.LocalFileSystem(), "marl.storage": atomic_local_filesystem()}
times = {k: [] for k in fss}
for i in range(n):
    for name, fs in fss.items():  # interleaved: the same load on both
        dest = out / f"{name}-{i}"; dest.mkdir()
        t = time.perf_counter(); pyarrow.fs.copy_files(str(src), str(dest), destination_filesystem=fs)
        times[name].append(time.perf_counter() - t)
for k, v in times.items():
    print(f"{k}: median {statistics.median(v)*1e3:.2f} ms, p90 {sorted(v)[int(.9*len(v))]*1e3:.2f} ms over {n} copies of {sum(f.stat().st_size for f in src.rglob('*') if f.is_file())/1e3:.0f} kB")
shutil.rmtree(out)
