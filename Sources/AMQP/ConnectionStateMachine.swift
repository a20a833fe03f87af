/// The connection's life as decisions: for each thing that happens to it, the state it moves to
/// and what the proactor thread does next. It holds no Proton object and reads no clock (the
/// instant and the jitter come in with each input), so every transition is tested without a broker.
struct ConnectionStateMachine: Sendable {
    enum State: Equatable, Sendable {
        /// `run()` has not started the proactor thread yet.
        case idle
        /// Opening node `node`; the attempt is abandoned at `deadline` (a node that drops packets
        /// would otherwise hold it for the kernel's two-minute TCP timeout).
        case connecting(node: Int, failures: Int, deadline: ContinuousClock.Instant)
        /// The attempt was cut; waiting for its transport to close, given up at `deadline` if it
        /// never reports it (Proton may set up nothing to report on).
        case abandoning(node: Int, failures: Int, deadline: ContinuousClock.Instant)
        /// Open.
        case connected(Open)
        /// Waiting out the backoff before opening `node`.
        case backingOff(node: Int, failures: Int, until: ContinuousClock.Instant)
        /// Closing for good: waiting for the transport to close; at `deadline` it is cut (when
        /// `cut` is false) or, cut already, left behind and the thread ends.
        case closing(deadline: ContinuousClock.Instant, cut: Bool)
        /// Over: the proactor thread ends.
        case closed
    }

    struct Open: Equatable, Sendable {
        var node: Int
        var generation: UInt64
        /// The failed attempts before this opening, and when it opened: a connection lost soon
        /// after it opened (a broker that closes it at once, as RabbitMQ does when it refuses a
        /// subscription) goes on up the backoff instead of starting it again, or the client would
        /// reconnect ten times a second for as long as the refusal lasts.
        var failures: Int
        var since: ContinuousClock.Instant
        /// When to attach again the subscriptions the broker closed.
        var reattachAt: ContinuousClock.Instant?
    }

    /// How a failed attempt or a lost connection is reported: a new reason is worth a warning, the
    /// same one again only a debug line.
    enum Report: Equatable, Sendable {
        case disconnected(reason: String)
        case cannotConnect(reason: String, again: Bool)
    }

    enum Action: Equatable, Sendable {
        /// Open a transport to the node; wake up after `timer` to check the attempt's deadline.
        case connect(node: Int, timer: Duration)
        /// Cut the transport under way (an attempt that takes too long, a close the broker does
        /// not answer); it then closes. Wake up after `timer` in case it never says so.
        case cutTransport(timer: Duration)
        /// The transport that was cut never reported closing: forget it as if it had, with this reason.
        case forgetTransport(reason: String)
        /// The connection is open: attach every subscription, send what waits, tell the owner.
        case announceConnected(generation: UInt64)
        /// Fail what was in flight, report, and wake up after `delay` to try the next node.
        case retry(report: Report, delay: Duration)
        /// Wake up after this long.
        case wait(Duration)
        /// Attach again the subscriptions the broker closed while the connection stayed open.
        case reattach
        /// Close the open connection (its transport then closes); wake up after `timer` to cut it
        /// if the broker has not answered the close by then.
        case closeConnection(timer: Duration)
        /// End the proactor thread.
        case stop
        case none
    }

    struct Timing: Sendable {
        /// The first and the longest backoff step.
        var backoff: ClosedRange<Duration>
        /// How long one attempt to open a node may take.
        var connectTimeout: Duration
        /// How long after the broker closed a subscription it is attached again.
        var reattachDelay: Duration
        /// How long a close waits for the broker's answer before the transport is cut.
        var closeTimeout: Duration
        /// How long a connection must have stayed open for its loss to start the backoff again.
        var stableAfter: Duration
    }

    private(set) var state: State = .idle
    let nodes: Int
    let timing: Timing
    private var generation: UInt64 = 0
    private var lastFailure: String?

    init(nodes: Int, timing: Timing) {
        precondition(nodes > 0, "a connection needs a node")
        self.nodes = nodes
        self.timing = timing
    }

    /// The node the connection is open to, or being opened to.
    var node: Int? {
        switch state {
        case .connecting(let node, _, _), .abandoning(let node, _, _), .backingOff(let node, _, _): node
        case .connected(let open): open.node
        case .idle, .closing, .closed: nil
        }
    }

    var isOpen: Bool {
        if case .connected = state { return true }
        return false
    }

    /// The proactor thread starts: try the first node.
    mutating func start(now: ContinuousClock.Instant) -> Action {
        guard case .idle = state else { return .none }
        return attempt(node: 0, failures: 0, now: now)
    }

    /// The broker answered the open.
    mutating func opened(now: ContinuousClock.Instant) -> Action {
        guard case .connecting(let node, let failures, _) = state else { return .none }
        generation += 1
        lastFailure = nil
        state = .connected(Open(node: node, generation: generation, failures: failures, since: now))
        return .announceConnected(generation: generation)
    }

    /// The transport closed: an attempt failed, a connection was lost, or a close completed.
    /// `jitter` (between 0.5 and 1) scales the backoff step.
    mutating func transportClosed(reason: String, now: ContinuousClock.Instant, jitter: Double) -> Action {
        switch state {
        case .connecting(let node, let failures, _), .abandoning(let node, let failures, _):
            var reason = reason
            if case .abandoning = state, !reason.hasPrefix("not open within") { reason = "not open within \(timing.connectTimeout)" }
            let again = reason == lastFailure
            lastFailure = reason
            return backOff(from: node, failures: failures + 1, report: .cannotConnect(reason: reason, again: again), now: now, jitter: jitter)
        case .connected(let open):
            lastFailure = nil
            let failures = now - open.since < timing.stableAfter ? open.failures + 1 : 1
            return backOff(from: open.node, failures: failures, report: .disconnected(reason: reason), now: now, jitter: jitter)
        case .closing:
            state = .closed
            return .stop
        case .idle, .backingOff, .closed:
            return .none
        }
    }

    /// The proactor's timer fired (it may fire early, or for a timer set in an earlier state).
    mutating func timerFired(now: ContinuousClock.Instant) -> Action {
        switch state {
        case .connecting(let node, let failures, let deadline):
            guard now >= deadline else { return .wait(deadline - now) }
            state = .abandoning(node: node, failures: failures, deadline: now + timing.closeTimeout)
            return .cutTransport(timer: timing.closeTimeout)
        case .abandoning(_, _, let deadline):
            guard now >= deadline else { return .wait(deadline - now) }
            return .forgetTransport(reason: "not open within \(timing.connectTimeout), and not closed when cut")
        case .backingOff(let node, let failures, let until):
            guard now >= until else { return .wait(until - now) }
            return attempt(node: node, failures: failures, now: now)
        case .connected(var open):
            guard let reattachAt = open.reattachAt else { return .none }
            guard now >= reattachAt else { return .wait(reattachAt - now) }
            open.reattachAt = nil
            state = .connected(open)
            return .reattach
        case .closing(let deadline, let cut):
            guard now >= deadline else { return .wait(deadline - now) }
            guard !cut else {
                // Cut and still not closed: the thread ends anyway, Proton frees what is left.
                state = .closed
                return .stop
            }
            state = .closing(deadline: now + timing.closeTimeout, cut: true)
            return .cutTransport(timer: timing.closeTimeout)
        case .idle, .closed:
            return .none
        }
    }

    /// The broker closed a subscription that is still wanted, while the connection stays open.
    mutating func subscriptionClosed(now: ContinuousClock.Instant) -> Action {
        guard case .connected(var open) = state else { return .none }
        // One wait for all of them: a broker refusing every attach is asked once per delay.
        if open.reattachAt != nil { return .none }
        open.reattachAt = now + timing.reattachDelay
        state = .connected(open)
        return .wait(timing.reattachDelay)
    }

    /// The owner closes the connection for good.
    mutating func close(now: ContinuousClock.Instant) -> Action {
        switch state {
        case .idle, .backingOff:
            state = .closed
            return .stop
        case .connecting:
            state = .closing(deadline: now + timing.closeTimeout, cut: true)
            return .cutTransport(timer: timing.closeTimeout)
        case .abandoning:
            state = .closing(deadline: now + timing.closeTimeout, cut: true)
            return .wait(timing.closeTimeout)
        case .connected:
            state = .closing(deadline: now + timing.closeTimeout, cut: false)
            return .closeConnection(timer: timing.closeTimeout)
        case .closing, .closed:
            return .none
        }
    }

    private mutating func attempt(node: Int, failures: Int, now: ContinuousClock.Instant) -> Action {
        state = .connecting(node: node, failures: failures, deadline: now + timing.connectTimeout)
        return .connect(node: node, timer: timing.connectTimeout)
    }

    /// The next attempt goes to the next node. Every node is tried once at each step of the
    /// backoff, so that a lost node costs one short wait, not a climb to the longest.
    private mutating func backOff(from node: Int, failures: Int, report: Report, now: ContinuousClock.Instant, jitter: Double) -> Action {
        let exponent = min((failures - 1) / nodes, 20)
        let ceiling = min(timing.backoff.lowerBound * (1 << exponent), timing.backoff.upperBound)
        let delay = ceiling * min(max(jitter, 0.5), 1)
        state = .backingOff(node: (node + 1) % nodes, failures: failures, until: now + delay)
        return .retry(report: report, delay: delay)
    }
}
