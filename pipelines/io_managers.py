"""The IO manager of the daily frames: one Parquet file per (asset, day), so a backfill's single
run writes each day of its range and a one-day run reads only its day."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from core.calendar import each_day

UNPARTITIONED = "__all__"


class DailyFramesIOManager(dg.ConfigurableIOManager):
    """Stores frames with an `as_of` column split by day under `base_dir/<asset key>/<day>.parquet`.

    Dagster's default filesystem IO manager refuses outputs that span several partitions (what a
    single-run backfill produces); this one splits them. Every step of a run must see `base_dir`:
    the Dagster storage folder on one machine, a shared volume on Kubernetes.
    """

    base_dir: str = ""
    _default_dir: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.instance is not None:
            self._default_dir = str(Path(context.instance.storage_directory()) / "krpulse_frames")

    def _folder(self, asset_key: dg.AssetKey) -> Path:
        base = Path(self.base_dir or self._default_dir or ".dagster/storage/krpulse_frames")
        return base.joinpath(*asset_key.path)

    @staticmethod
    def _keys(context: dg.InputContext | dg.OutputContext) -> list[str]:
        return (
            list(context.asset_partition_keys) if context.has_asset_partitions else [UNPARTITIONED]
        )

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        folder = self._folder(context.asset_key)
        folder.mkdir(parents=True, exist_ok=True)
        keys = self._keys(context)
        if keys == [UNPARTITIONED]:
            obj.to_parquet(folder / f"{UNPARTITIONED}.parquet", index=False)
            return
        # One file per day of the range; a day without rows still gets its (empty) file, so a
        # rerun that computes nothing for a day replaces what an earlier run left there.
        day_of_row = pd.to_datetime(obj["as_of"]).dt.strftime("%Y-%m-%d")
        for key in keys:
            obj[day_of_row == key].reset_index(drop=True).to_parquet(
                folder / f"{key}.parquet", index=False
            )
        context.add_output_metadata({"days_written": len(keys), "rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        folder = self._folder(context.asset_key)
        frames = []
        for key in self._keys(context):
            path = folder / f"{key}.parquet"
            if not path.exists():
                raise FileNotFoundError(
                    f"{context.asset_key.to_user_string()} has no stored frame for {key} "
                    f"(looked in {folder}); materialise that day first"
                )
            frames.append(pd.read_parquet(path))
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if "as_of" in frame.columns and len(frame):
            frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        return frame


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days a run computes: its one partition, or the whole range of a single-run backfill."""
    window = context.partition_key_range
    start, end = dt.date.fromisoformat(window.start), dt.date.fromisoformat(window.end)
    return each_day(start, end)
