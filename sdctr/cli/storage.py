"""`sdctr storage setup --lvm VG`: an LVM thin pool for the devicemapper driver, made as
docker-storage-setup made Docker's (sdctr.storage.lvm), then named in sdctr.yaml. Idempotent: a
pool of that name that is sdctr's already is taken as it is."""

from __future__ import annotations

import argparse

from sdctr.log import SdctrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.paths import Paths
    from sdctr.storage.lvm import Pool


def say(line: str) -> None:
    print(line, flush=True)


def cmd_storage_setup(args: argparse.Namespace) -> int:
    from sdctr import config
    from sdctr.paths import Paths
    from sdctr.storage import lvm

    pool = lvm.Pool(args.lvm, args.name)
    if not config.THINPOOL.fullmatch(pool.text):
        raise SdctrError(f"{pool.text!r} is not an LVM volume group and LV name",
                         hint="letters, digits and +_.- (not starting with -)")
    lvm.check_tools()
    path = config.config_path()
    settings = config.load(path)  # a broken file is refused before anything is made
    _check_no_other_pool(Paths.from_root(args.root), settings.storage.devicemapper.thinpool, pool)
    space = lvm.vg_space(pool.vg)
    existing = lvm.pool_lv(pool)
    if existing is not None:
        lvm.check_dedicated(pool, existing)
        say(f"LVM thin pool {pool.text} is there already, unused by LVM: sdctr takes it")
    else:
        metadata = lvm.metadata_bytes(space.size)
        size_args = lvm.data_size_args(pool.vg, args.size, space, metadata)
        say(f"wrote the autoextend profile {lvm.write_profile()} (grow by 20 % at 60 % used)")
        say(f"making LVM thin pool {pool.text}: " + " ".join(lvm.create_command(pool, size_args, metadata)))
        lvm.create(pool, size_args, metadata)
        made = lvm.check_dedicated(pool, lvm.pool_lv(pool))
        say(f"made LVM thin pool {pool.text}: {made.size >> 20} MiB of data, {made.metadata_size >> 20} MiB "
            f"of metadata, {made.chunk_size >> 10} KiB blocks")
    dm = settings.storage.devicemapper
    if (settings.storage.driver, dm.thinpool) == ("devicemapper", pool.text):
        say(f"{path} names it already: storage.driver devicemapper, "
            f"storage.devicemapper.thinpool {pool.text}")
        return 0
    backup = config.set_storage(path, "devicemapper", {"thinpool": pool.text})
    if backup:
        say(f"kept the previous {path} as {backup} (its comments)")
    say(f"wrote {path}: storage.driver devicemapper, storage.devicemapper.thinpool {pool.text}")
    return 0


def _check_no_other_pool(paths: Paths, configured: str, pool: Pool) -> None:
    """docker-storage-setup's check_docker_storage_metadata: thin devices in another pool (the loop
    files, or another LVM pool) would be lost to sdctr by the switch: refused before LVM is touched."""
    from sdctr import config
    from sdctr.storage.devicemapper import DeviceMapperSnapshotter

    if configured == pool.text:
        return
    snap = DeviceMapperSnapshotter(paths, config.DeviceMapper(thinpool=configured))
    held = [d.name for d in snap.devices() if d.name != "base"]
    if held:
        where = f"LVM thin pool {configured}" if configured else f"the loop files under {snap.pool_dir}"
        raise SdctrError(f"sdctr's devicemapper driver has {len(held)} thin device(s) in {where}: a new pool "
                         "would leave them behind",
                         hint="remove the containers and images on devicemapper first (sdctr rm, sdctr rmi), "
                              "or keep the pool you have")
