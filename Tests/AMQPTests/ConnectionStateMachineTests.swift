import Testing
@testable import AMQP

/// The connection's decisions, without a broker or a clock: each input and what follows.
@Suite("AMQP connection state machine")
struct ConnectionStateMachineTests {
    let timing = ConnectionStateMachine.Timing(
        backoff: .milliseconds(100)...(.seconds(2)), connectTimeout: .seconds(4), reattachDelay: .seconds(2), closeTimeout: .seconds(2),
        stableAfter: .seconds(10)
    )
    let t0 = ContinuousClock.now

    func machine(nodes: Int = 3) -> ConnectionStateMachine { ConnectionStateMachine(nodes: nodes, timing: timing) }

    @Test("starting tries the first node with the attempt's deadline; an open announces generation 1")
    func start() {
        var machine = machine()
        #expect(machine.start(now: t0) == .connect(node: 0, timer: .seconds(4)))
        #expect(machine.state == .connecting(node: 0, failures: 0, deadline: t0 + .seconds(4)))
        #expect(machine.start(now: t0) == .none, "started once")
        #expect(machine.opened(now: t0) == .announceConnected(generation: 1))
        #expect(machine.isOpen)
        #expect(machine.node == 0)
    }

    @Test("each failure moves to the next node; every node is tried once per backoff step, which doubles up to the longest")
    func backoffAcrossNodes() {
        var machine = machine()
        var now = t0
        _ = machine.start(now: now)
        var delays: [Duration] = []
        var nodes: [Int] = []
        for _ in 0..<15 {
            guard case .retry(_, let delay) = machine.transportClosed(reason: "refused", now: now, jitter: 1) else {
                Issue.record("a failed attempt is retried")
                return
            }
            delays.append(delay)
            now += delay
            guard case .connect(let node, _) = machine.timerFired(now: now) else {
                Issue.record("the backoff ends in an attempt")
                return
            }
            nodes.append(node)
        }
        #expect(nodes == [1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
        #expect(delays.map { $0 / .milliseconds(1) } == [100, 100, 100, 200, 200, 200, 400, 400, 400, 800, 800, 800, 1600, 1600, 1600].map(Double.init))
        _ = machine.transportClosed(reason: "refused", now: now, jitter: 1)
        now += .seconds(2)
        _ = machine.timerFired(now: now)
        _ = machine.transportClosed(reason: "refused", now: now, jitter: 1)
        now += .seconds(2)
        _ = machine.timerFired(now: now)
        guard case .retry(_, let longest) = machine.transportClosed(reason: "refused", now: now, jitter: 1) else {
            Issue.record("retried")
            return
        }
        #expect(longest == .seconds(2), "capped at the longest step")
    }

    @Test("jitter takes between half and all of the step")
    func jitter() {
        var machine = machine(nodes: 1)
        _ = machine.start(now: t0)
        #expect(machine.transportClosed(reason: "x", now: t0, jitter: 0.5) == .retry(report: .cannotConnect(reason: "x", again: false), delay: .milliseconds(50)))
        _ = machine.timerFired(now: t0 + .seconds(1))
        #expect(machine.transportClosed(reason: "x", now: t0, jitter: 0.1) == .retry(report: .cannotConnect(reason: "x", again: true), delay: .milliseconds(100)),
                "clamped to half of the step (the second failure on one node doubles it)")
    }

    @Test("a repeated reason is reported as such; a lost connection is a disconnection and starts the backoff again")
    func reports() {
        var machine = machine(nodes: 2)
        _ = machine.start(now: t0)
        #expect(machine.transportClosed(reason: "refused", now: t0, jitter: 1) == .retry(report: .cannotConnect(reason: "refused", again: false), delay: .milliseconds(100)))
        _ = machine.timerFired(now: t0 + .seconds(1))
        #expect(machine.transportClosed(reason: "refused", now: t0, jitter: 1) == .retry(report: .cannotConnect(reason: "refused", again: true), delay: .milliseconds(100)))
        _ = machine.timerFired(now: t0 + .seconds(2))
        #expect(machine.opened(now: t0) == .announceConnected(generation: 1))
        #expect(machine.node == 0)
        let later = t0 + .seconds(10)
        #expect(machine.transportClosed(reason: "reset", now: later, jitter: 1) == .retry(report: .disconnected(reason: "reset"), delay: .milliseconds(100)))
        #expect(machine.state == .backingOff(node: 1, failures: 1, until: later + .milliseconds(100)), "the next node, the first step")
        _ = machine.timerFired(now: later + .seconds(1))
        #expect(machine.transportClosed(reason: "refused", now: later, jitter: 1) == .retry(report: .cannotConnect(reason: "refused", again: false), delay: .milliseconds(100)),
                "after a connection, an old reason is news again")
        _ = machine.timerFired(now: later + .seconds(2))
        #expect(machine.opened(now: later) == .announceConnected(generation: 2))
    }

    @Test("a connection lost soon after it opened goes on up the backoff; one that stayed open starts it again")
    func unstableConnection() {
        var machine = machine(nodes: 1)
        var now = t0
        _ = machine.start(now: now)
        var delays: [Duration] = []
        // A broker that closes every connection at once (RabbitMQ refusing a subscription).
        for _ in 0..<8 {
            _ = machine.opened(now: now)
            guard case .retry(_, let delay) = machine.transportClosed(reason: "closed", now: now + .milliseconds(5), jitter: 1) else {
                Issue.record("retried")
                return
            }
            delays.append(delay)
            now += .milliseconds(5) + delay
            _ = machine.timerFired(now: now)
        }
        #expect(delays.map { $0 / .milliseconds(1) } == [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(Double.init), "no storm of reconnects")
        _ = machine.opened(now: now)
        #expect(machine.transportClosed(reason: "closed", now: now + .seconds(10), jitter: 1) == .retry(report: .disconnected(reason: "closed"), delay: .milliseconds(100)),
                "ten seconds open: the next loss starts from the first step")
    }

    @Test("an attempt without an answer is cut at its deadline, and the next node is tried")
    func connectDeadline() {
        var machine = machine()
        _ = machine.start(now: t0)
        #expect(machine.timerFired(now: t0 + .seconds(1)) == .wait(.seconds(3)), "early: wait for the rest")
        #expect(machine.timerFired(now: t0 + .seconds(4)) == .cutTransport(timer: .seconds(2)))
        #expect(machine.opened(now: t0) == .none, "an open after the cut does not count")
        #expect(machine.transportClosed(reason: "connection closed", now: t0 + .seconds(4), jitter: 1)
                == .retry(report: .cannotConnect(reason: "not open within 4.0 seconds", again: false), delay: .milliseconds(100)))
        #expect(machine.timerFired(now: t0 + .seconds(5)) == .connect(node: 1, timer: .seconds(4)))
    }

    @Test("a cut attempt whose transport never reports closing is forgotten after the close timeout, and the next node tried")
    func cutWithoutAnswer() {
        var machine = machine()
        _ = machine.start(now: t0)
        _ = machine.timerFired(now: t0 + .seconds(4))
        #expect(machine.timerFired(now: t0 + .seconds(5)) == .wait(.seconds(1)))
        let forget = machine.timerFired(now: t0 + .seconds(6))
        guard case .forgetTransport(let reason) = forget else {
            Issue.record("\(forget)")
            return
        }
        // The engine forgets it as if it had closed.
        #expect(machine.transportClosed(reason: reason, now: t0 + .seconds(6), jitter: 1)
                == .retry(report: .cannotConnect(reason: "not open within 4.0 seconds, and not closed when cut", again: false), delay: .milliseconds(100)))
        #expect(machine.timerFired(now: t0 + .seconds(7)) == .connect(node: 1, timer: .seconds(4)))
    }

    @Test("a timer left from an earlier state does nothing")
    func staleTimer() {
        var machine = machine()
        _ = machine.start(now: t0)
        _ = machine.opened(now: t0)
        #expect(machine.timerFired(now: t0 + .seconds(4)) == .none, "the attempt's deadline, after the open")
        #expect(machine.isOpen)
    }

    @Test("subscriptions the broker closes are attached again after one delay, whatever their number")
    func reattach() {
        var machine = machine()
        _ = machine.start(now: t0)
        _ = machine.opened(now: t0)
        #expect(machine.subscriptionClosed(now: t0) == .wait(.seconds(2)))
        #expect(machine.subscriptionClosed(now: t0 + .seconds(1)) == .none, "one wait for all of them")
        #expect(machine.timerFired(now: t0 + .seconds(1)) == .wait(.seconds(1)))
        #expect(machine.timerFired(now: t0 + .seconds(2)) == .reattach)
        #expect(machine.timerFired(now: t0 + .seconds(3)) == .none)
        #expect(machine.subscriptionClosed(now: t0 + .seconds(3)) == .wait(.seconds(2)), "closed again: again after the delay")
        var disconnected = self.machine()
        #expect(disconnected.subscriptionClosed(now: t0) == .none, "without a connection, the next one attaches everything")
    }

    @Test("closing: at once when nothing is open, through the broker when connected, cut when it does not answer")
    func close() {
        var idle = machine()
        #expect(idle.close(now: t0) == .stop)
        #expect(idle.start(now: t0) == .none, "a closed connection never starts")

        var waiting = machine()
        _ = waiting.start(now: t0)
        _ = waiting.transportClosed(reason: "refused", now: t0, jitter: 1)
        #expect(waiting.close(now: t0) == .stop)
        #expect(waiting.timerFired(now: t0 + .seconds(1)) == .none, "no attempt after the close")

        var connecting = machine()
        _ = connecting.start(now: t0)
        #expect(connecting.close(now: t0) == .cutTransport(timer: .seconds(2)))
        #expect(connecting.opened(now: t0) == .none)
        #expect(connecting.transportClosed(reason: "x", now: t0, jitter: 1) == .stop)

        // Every way of closing ends, even when Proton never reports the transport closed.
        var silent = machine()
        _ = silent.start(now: t0)
        _ = silent.close(now: t0)
        #expect(silent.timerFired(now: t0 + .seconds(2)) == .stop, "cut, and no answer: the thread ends anyway")
        var abandoning = machine()
        _ = abandoning.start(now: t0)
        _ = abandoning.timerFired(now: t0 + .seconds(4))
        #expect(abandoning.close(now: t0 + .seconds(4)) == .wait(.seconds(2)), "already cut: wait for it")
        #expect(abandoning.timerFired(now: t0 + .seconds(5)) == .wait(.seconds(1)))
        #expect(abandoning.timerFired(now: t0 + .seconds(6)) == .stop)

        var open = machine()
        _ = open.start(now: t0)
        _ = open.opened(now: t0)
        #expect(open.close(now: t0) == .closeConnection(timer: .seconds(2)))
        #expect(open.close(now: t0) == .none, "closed once")
        #expect(open.timerFired(now: t0 + .seconds(1)) == .wait(.seconds(1)))
        #expect(open.timerFired(now: t0 + .seconds(2)) == .cutTransport(timer: .seconds(2)), "the broker did not answer the close")
        #expect(open.transportClosed(reason: "x", now: t0 + .seconds(2), jitter: 1) == .stop)
        #expect(open.state == .closed)
        var unanswered = machine()
        _ = unanswered.start(now: t0)
        _ = unanswered.opened(now: t0)
        _ = unanswered.close(now: t0)
        _ = unanswered.timerFired(now: t0 + .seconds(2))
        #expect(unanswered.timerFired(now: t0 + .seconds(4)) == .stop, "not closed even when cut: the thread ends anyway")
    }
}
