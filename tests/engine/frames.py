"""Frame comparison for the determinism tests: two runs are the same when every frame is the
same on the wire, i.e. what a worker sends and a client receives (typed arrays included)."""

from app.encoding import dumps
from app.workers import frame_message


def on_the_wire(frames) -> list[str]:
    messages = [frame_message(frame) for frame in frames]
    for message in messages:
        message.pop("artifact")  # stays on the server; later frames show what it holds
    return [dumps(message) for message in messages]


def same_frames(a, b) -> bool:
    return on_the_wire(a) == on_the_wire(b)
