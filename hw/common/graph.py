"""A streaming dataflow graph of layer engines: forks, branch FIFOs, gearboxes and joins.

The generalisation of :class:`~nnaccel.hw.common.pipeline.Pipeline` to a directed acyclic
graph. Every node is an engine with one input port (``i_data``) or several (a join: its
``in_ports``) and one output ``o_data``. A tensor read by ``k`` > 1 ports goes through a
:class:`~nnaccel.hw.join.engine.Broadcast` (a beat leaves when every consumer took it). In front
of every port: a FIFO (depth chosen by the generator from the graph's timing) and, where the
producer's beat differs from the port's, gearboxes (through ``lcm`` of the two beats when neither
divides the other, so the edge passes as many elements a cycle as the narrower side), placed as in
the pipeline: the FIFO on the wide side.
"""

import math
from dataclasses import dataclass

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .stream import Broadcast, Gearbox, StreamFifo, check_positive, vector_stream

__all__ = ["Port", "Node", "GraphNetwork", "edge_beats", "GRAPH_INPUT"]

#: The name under which ports refer to the network's input stream.
GRAPH_INPUT = "input"


def edge_beats(beat_out, beat_in):
    """``(mid, wide)`` of an edge from a producer's beat to a port's: ``mid`` the beat after
    the first gearbox (the producer's own when one beat divides the other, else their lcm:
    the first gearbox collects producer beats, the second splits them into the port's, so the
    edge carries ``min(beat_out, beat_in)`` elements a cycle; through their gcd it would carry
    only the gcd, below both layers' rates), ``wide`` the FIFO's width, ``max(mid, beat_in)``.
    """
    mid = beat_out
    if beat_out % beat_in and beat_in % beat_out:
        mid = math.lcm(beat_out, beat_in)
    return mid, max(mid, beat_in)


@dataclass(frozen=True)
class Port:
    """One input of a node: the tensor ``source`` (a node name or :data:`GRAPH_INPUT`), the FIFO
    depth in beats of the edge's wide side, the elements per vector ``count`` and the gearbox
    restart count ``group`` (a map's channels; None: ``count``)."""

    source: str
    fifo_depth: int
    count: int
    group: int | None = None


@dataclass(frozen=True)
class Node:
    """A layer engine, its input ports (in the engine's port order) and its beats."""

    name: str
    engine: wiring.Component
    ports: tuple
    in_beat: int
    out_beat: int


def _engine_ports(engine):
    ports = getattr(engine, "in_ports", None)
    return list(ports) if ports is not None else [engine.i_data]


class GraphNetwork(wiring.Component):
    """Nodes in topological order, the last one the network's output.

    ``i_data``: the network input, ``in_beat`` elements of ``in_shape`` per beat; ``o_data``:
    the last node's output. After elaboration, :attr:`fifos` maps ``(node, port index)`` to the
    FIFO in front of that port (for testbenches that watch occupancy). Submodules are named
    as a chain's (:class:`~nnaccel.hw.common.pipeline.Pipeline`): node ``N``'s engine
    ``layer<N>_<name>``, its ports' FIFOs and gearboxes ``fifo<N>_*`` and ``gear<N>_*``, so that
    synthesis figures go to the layer by name (``nnaccel.boards.build.layer_cells``).
    """

    def __init__(self, nodes, *, in_shape, in_beat, out_shape):
        if not nodes:
            raise ValueError("a graph needs at least one node")
        self.nodes = list(nodes)
        self.in_beat = check_positive("in_beat", in_beat)
        self._in_shape = in_shape
        self.out_beat = self.nodes[-1].out_beat
        super().__init__({
            "i_data": In(vector_stream(in_shape, in_beat)),
            "o_data": Out(vector_stream(out_shape, self.out_beat)),
        })

    def elaborate(self, platform):
        m = Module()
        self.fifos = {}
        readers = {}
        for node in self.nodes:
            for port in node.ports:
                readers[port.source] = readers.get(port.source, 0) + 1
        # per tensor: (its beat, element shape, the streams still to hand out)
        tensors = {}

        def publish(name, stream, beat, shape):
            k = readers.get(name, 0)
            if k > 1:
                fork = Broadcast(data.ArrayLayout(shape, beat), k)
                m.submodules[f"fork_{name}"] = fork
                wiring.connect(m, stream, fork.i_data)
                outs = [fork.o_data[j] for j in range(k)]
            else:
                outs = [stream]
            tensors[name] = (beat, shape, outs)

        publish(GRAPH_INPUT, wiring.flipped(self.i_data), self.in_beat, self._in_shape)
        for index, node in enumerate(self.nodes):
            targets = _engine_ports(node.engine)
            if len(targets) != len(node.ports):
                raise ValueError(f"node {node.name}: {len(node.ports)} ports for an engine "
                                 f"with {len(targets)}")
            m.submodules[f"layer{index}_{node.name}"] = node.engine
            for n, (port, target) in enumerate(zip(node.ports, targets, strict=True)):
                beat, shape, outs = tensors[port.source]
                upstream = outs.pop(0)
                tag = f"{index}_{node.name}_{n}"
                group = port.group or port.count
                mid, wide = edge_beats(beat, node.in_beat)
                if mid != beat:
                    pre = Gearbox(shape, n_in=beat, n_out=mid, count=group)
                    m.submodules[f"gear{tag}_pre"] = pre
                    wiring.connect(m, upstream, pre.i_data)
                    upstream = pre.o_data
                gear = None
                if mid != node.in_beat:
                    gear = Gearbox(shape, n_in=mid, n_out=node.in_beat, count=group)
                    m.submodules[f"gear{tag}"] = gear
                fifo = StreamFifo(data.ArrayLayout(shape, wide), port.fifo_depth)
                self.fifos[(node.name, n)] = fifo
                m.submodules[f"fifo{tag}"] = fifo
                chain = [fifo, gear] if gear is not None and mid > node.in_beat else [gear, fifo]
                for block in chain:
                    if block is not None:
                        wiring.connect(m, upstream, block.i_data)
                        upstream = block.o_data
                wiring.connect(m, upstream, target)
            publish(node.name, node.engine.o_data, node.out_beat,
                    node.engine.o_data.payload.shape().elem_shape)
        last = self.nodes[-1].name
        (out,) = tensors[last][2]
        wiring.connect(m, out, wiring.flipped(self.o_data))
        return m
