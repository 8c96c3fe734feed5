#!/usr/bin/env python3
"""Reads TensorBoard event files back with the official `tensorboard` package and prints what
TensorBoard sees, as JSON on stdout.

Usage: PYTHONPATH=<dir with tensorboard> python3 scripts/tb_readback.py LOGDIR

LOGDIR is a folder of runs (e.g. runs/) or one run. The output:

  {"runs": {RUN: {"plugins":    {PLUGIN: [TAG, ...]},
                  "scalars":    {TAG: [[STEP, VALUE], ...]},
                  "text":       {TAG: [[STEP, TEXT], ...]},
                  "histograms": {TAG: [[STEP, [[LEFT, RIGHT, COUNT], ...]], ...]},
                  "images":     {TAG: [[STEP, {"width": W, "height": H, "png_bytes": N,
                                               "png_crc32": CRC}], ...]},
                  "hparams":    {"session_start_info": {NAME: VALUE},
                                 "experiment": {"hparams": [NAME], "metrics": [TAG]}}}},
   "hparams_tab": {"hparams": [NAME], "metrics": [TAG],
                   "sessions": [{"name": RUN, "hparams": {NAME: VALUE},
                                 "metrics": {TAG: VALUE}}]}}

Runs are read with TensorBoard's EventMultiplexer (plugin_event_accumulator.EventAccumulator
per run, the reader its server uses, including the legacy-to-tensor migration and restart
purging); "hparams_tab" is what the HPARAMS tab would list, computed by the hparams plugin's
own request handlers. Used by agents/tests/logging_tensorboard.rs; handy by hand too.
"""

import json
import sys
import zlib

try:
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import backend_context
    from tensorboard.plugins.hparams import get_experiment
    from tensorboard.plugins.hparams import list_session_groups
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboard.util import tensor_util
except ImportError as e:  # the caller turns this into "run scripts/setup"
    print(f"tb_readback: cannot import tensorboard ({e}); run scripts/setup", file=sys.stderr)
    sys.exit(3)


def pb_value(v):
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return v.number_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def read_run(acc):
    out = {"plugins": {}, "scalars": {}, "text": {}, "histograms": {}, "images": {}, "hparams": {}}
    for plugin in acc.ActivePlugins():
        out["plugins"][plugin] = sorted(acc.PluginTagToContent(plugin))
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        events = acc.Tensors(tag)
        if plugin == "scalars":
            out["scalars"][tag] = [
                [e.step, float(tensor_util.make_ndarray(e.tensor_proto))] for e in events
            ]
        elif plugin == "text":
            out["text"][tag] = [
                [e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode("utf-8")]
                for e in events
            ]
        elif plugin == "histograms":
            out["histograms"][tag] = [
                [e.step, tensor_util.make_ndarray(e.tensor_proto).tolist()] for e in events
            ]
        elif plugin == "images":
            # The images plugin's tensor: [width, height, encoded image, ...] as strings.
            out["images"][tag] = []
            for e in events:
                width, height, png = tensor_util.make_ndarray(e.tensor_proto).tolist()[:3]
                out["images"][tag].append(
                    [
                        e.step,
                        {
                            "width": int(width),
                            "height": int(height),
                            "png_bytes": len(png),
                            "png_crc32": zlib.crc32(png),
                        },
                    ]
                )
    hparams_content = (
        acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        if hparams_metadata.PLUGIN_NAME in acc.ActivePlugins()
        else {}
    )
    for tag, content in hparams_content.items():
        if tag == hparams_metadata.SESSION_START_INFO_TAG:
            info = hparams_metadata.parse_session_start_info_plugin_data(content)
            out["hparams"]["session_start_info"] = {
                k: pb_value(v) for k, v in info.hparams.items()
            }
        elif tag == hparams_metadata.EXPERIMENT_TAG:
            exp = hparams_metadata.parse_experiment_plugin_data(content)
            out["hparams"]["experiment"] = {
                "hparams": [h.name for h in exp.hparam_infos],
                "metrics": [m.name.tag for m in exp.metric_infos],
            }
    return out


def hparams_tab(logdir, mux):
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = backend_context.Context(
        base_plugin.TBContext(data_provider=provider, logdir=logdir, multiplexer=mux)
    )
    req = tb_context.RequestContext()
    exp = get_experiment.Handler(req, ctx, "", api_pb2.GetExperimentRequest()).run()
    groups = list_session_groups.Handler(
        req,
        ctx,
        "",
        api_pb2.ListSessionGroupsRequest(
            start_index=0,
            slice_size=1000,
            # What the HPARAMS tab asks for by default: sessions of any status.
            allowed_statuses=[
                api_pb2.STATUS_UNKNOWN,
                api_pb2.STATUS_SUCCESS,
                api_pb2.STATUS_FAILURE,
                api_pb2.STATUS_RUNNING,
            ],
        ),
    ).run()
    sessions = []
    for group in groups.session_groups:
        sessions.append(
            {
                "name": group.name,
                "hparams": {k: pb_value(v) for k, v in group.hparams.items()},
                "metrics": {m.name.tag: m.value for m in group.metric_values},
            }
        )
    return {
        "hparams": sorted(h.name for h in exp.hparam_infos),
        "metrics": sorted(m.name.tag for m in exp.metric_infos),
        "sessions": sorted(sessions, key=lambda s: s["name"]),
    }


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    logdir = sys.argv[1]
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    runs = {run: read_run(mux.GetAccumulator(run)) for run in sorted(mux.Runs())}
    json.dump({"runs": runs, "hparams_tab": hparams_tab(logdir, mux)}, sys.stdout)


if __name__ == "__main__":
    main()
