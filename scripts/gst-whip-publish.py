#!/usr/bin/python3
"""A WHIP publisher built from GStreamer's own WebRTC stack (webrtcbin + libnice), the way
GStreamer-based encoders publish: H.264 (x264enc, constrained baseline) from a still photo
made live, plus Opus from a test tone, offered to a WHIP endpoint (RFC 9725).

    gst-whip-publish.py URL [--key KEY] [--image PATH] [--width W --height H] [--seconds N]

Prints `location <URL>` once the server answered 201, `connected` when ICE connects;
runs until stdin closes (or --seconds pass), then DELETEs the session and exits 0.
A refusal prints `refused <status> <body>` and exits 2.

GStreamer's own defaults are kept (its DTLS certificate is RSA before 1.28; callsight's
DTLS takes RSA and ECDSA). libnice gathers no loopback candidates: the server must listen
on a real interface (`--bind 0.0.0.0:PORT`).

Needs Debian's python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-plugins-{good,bad,ugly},
gstreamer1.0-nice. Written for callsight's tests (crates/server/tests/whip.rs) and as a
usable example; it is not part of the server.
"""

import argparse
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def pipeline_text(image, width, height):
    video = (
        f"filesrc location={image} ! decodebin ! imagefreeze is-live=true ! videoconvert ! videoscale "
        f"! video/x-raw,width={width},height={height},framerate=30/1,format=I420 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=1500 "
        "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 aggregate-mode=zero-latency "
        "! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000 ! send."
    )
    audio = (
        "audiotestsrc is-live=true wave=sine volume=0.1 ! audioconvert ! audioresample ! opusenc "
        "! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! send."
    )
    return f"webrtcbin name=send bundle-policy=max-bundle {video} {audio}"


class Publisher:
    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(pipeline_text(args.image, args.width, args.height))
        self.webrtc = self.pipe.get_by_name("send")
        self.location = None
        self.exit_code = 0
        self.offered = False
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def say(self, line):
        print(line, flush=True)

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.say(f"error {err.message} {dbg}")
        self.exit_code = 1
        self.loop.quit()

    def on_negotiation_needed(self, element):
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise, element, _):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            self.say(f"error no offer: {reply.to_string() if reply is not None else 'no reply'}")
            return
        element.emit("set-local-description", offer, Gst.Promise.new())
        # No trickle: the offer goes out once every local candidate is in it. Gathering
        # may complete before the local description is applied: look again until sent.
        GLib.timeout_add(100, self.on_gathering, element, None)

    def on_gathering(self, element, _pspec):
        state = element.get_property("ice-gathering-state")
        local = element.get_property("local-description")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and local is not None and not self.offered:
            self.offered = True
            threading.Thread(target=self.post, args=(local.sdp.as_text(),), daemon=True).start()
        return not self.offered

    def on_ice_state(self, element, _pspec):
        state = element.get_property("ice-connection-state")
        if state in (GstWebRTC.WebRTCICEConnectionState.CONNECTED, GstWebRTC.WebRTCICEConnectionState.COMPLETED):
            self.say("connected")
        elif state == GstWebRTC.WebRTCICEConnectionState.FAILED:
            self.say("ice-failed")

    def post(self, sdp):
        headers = {"Content-Type": "application/sdp"}
        if self.args.key:
            headers["Authorization"] = f"Bearer {self.args.key}"
        req = urllib.request.Request(self.args.url, data=sdp.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = r.read().decode()
                self.location = urllib.parse.urljoin(self.args.url, r.headers["Location"])
                status = r.status
        except urllib.error.HTTPError as e:
            self.say(f"refused {e.code} {e.read().decode().strip()}")
            self.exit_code = 2
            GLib.idle_add(self.loop.quit)
            return
        except OSError as e:
            self.say(f"refused 0 {e}")
            self.exit_code = 2
            GLib.idle_add(self.loop.quit)
            return
        if status != 201:
            self.say(f"refused {status} unexpected status")
            self.exit_code = 2
            GLib.idle_add(self.loop.quit)
            return
        GLib.idle_add(self.apply_answer, answer)

    def apply_answer(self, answer):
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            self.say("error unparseable answer")
            self.exit_code = 1
            self.loop.quit()
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        self.say(f"location {self.location}")
        return False

    def delete(self):
        if not self.location:
            return
        headers = {"Authorization": f"Bearer {self.args.key}"} if self.args.key else {}
        req = urllib.request.Request(self.location, headers=headers, method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                self.say(f"deleted {r.status}")
        except urllib.error.HTTPError as e:
            self.say(f"deleted {e.code}")

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        if self.args.seconds:
            GLib.timeout_add_seconds(self.args.seconds, self.loop.quit)
        else:
            threading.Thread(target=self.wait_stdin, daemon=True).start()
        self.loop.run()
        self.delete()
        self.pipe.set_state(Gst.State.NULL)
        return self.exit_code

    def wait_stdin(self):
        sys.stdin.read()
        GLib.idle_add(self.loop.quit)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--key", help="bearer token: the room's ingest key, or a room token")
    p.add_argument("--image", default="test-data/bus.jpg")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seconds", type=int, default=0, help="stop after this long (default: when stdin closes)")
    args = p.parse_args()
    Gst.init(None)
    sys.exit(Publisher(args).run())


if __name__ == "__main__":
    main()
