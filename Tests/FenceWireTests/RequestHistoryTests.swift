import Testing
@testable import FenceWire

@Suite("Request history")
struct RequestHistoryTests {
    let start = ContinuousClock.now

    func key(_ domain: String = "vm1", seqno: UInt32 = 7, operation: FenceOperation = .off) throws -> RequestKey {
        RequestKey(try FenceRequest(operation: operation, hash: .sha256, domain: domain, callback: nil, port: 1229, seqno: seqno))
    }

    func candidate(_ text: String, matches: Bool = true, port: UInt16 = 1229) -> CallbackCandidate {
        CallbackCandidate(address: CallbackAddress(text)!, port: port, matchesSource: matches)
    }

    func limits(_ change: (inout HistoryLimits) -> Void = { _ in }) -> HistoryLimits {
        var limits = HistoryLimits()
        change(&limits)
        return limits
    }

    @Test("copies merge; the copy matching its source is called back first")
    func mergeAndOrder() throws {
        var history = RequestHistory()
        let k = try key()
        #expect(history.admit(k, candidate: candidate("127.0.0.1", matches: false), source: "10.0.0.2", now: start) == .new(deadline: start + .seconds(20)))
        #expect(!history.hasSourceMatch(k))
        #expect(history.admit(k, candidate: candidate("10.0.0.5", matches: false), source: "10.0.0.2", now: start) == .merged)
        #expect(history.admit(k, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start) == .merged)
        #expect(history.admit(k, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start) == .merged)
        #expect(history.hasSourceMatch(k))
        guard case .candidates(let order) = history.beginCallback(k, now: start) else {
            Issue.record("no candidates")
            return
        }
        #expect(order.map(\.address.description) == ["10.0.0.2", "127.0.0.1", "10.0.0.5"])
        #expect(history.mayExecute(k))
        #expect(history.admit(k, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start) == .duplicate)
    }

    @Test("the key ignores domain case, as the reference does, and separates op and seqno")
    func keyIdentity() throws {
        var history = RequestHistory()
        let deadline = RequestHistory.Admission.new(deadline: start + .seconds(20))
        #expect(history.admit(try key("VM1"), candidate: nil, source: "s", now: start) == deadline)
        #expect(history.admit(try key("vm1"), candidate: nil, source: "s", now: start) == .merged)
        #expect(history.admit(try key("vm1", seqno: 8), candidate: nil, source: "s", now: start) == deadline)
        #expect(history.admit(try key("vm1", operation: .status), candidate: nil, source: "s", now: start) == deadline)
    }

    @Test("an answered request's copies are dropped for the window after its client took the call-back, by when they reached the host; then its key is new, deadline or not")
    func window() throws {
        var history = RequestHistory(limits: limits { $0.window = .seconds(2) })
        let k = try key()
        let reached = start + .seconds(1)
        _ = history.admit(k, candidate: nil, source: "s", now: start)
        _ = history.beginCallback(k, now: start)
        #expect(history.admit(k, candidate: nil, source: "s", now: reached + .seconds(3)) == .duplicate, "under way")
        history.finished(k, clientTook: reached)
        #expect(history.admit(k, candidate: nil, source: "s", now: start + .milliseconds(500)) == .duplicate, "reached the host before the call-back, read after the answer")
        #expect(history.admit(k, candidate: nil, source: "s", now: reached + .milliseconds(1999)) == .duplicate)
        let later = reached + .seconds(2)
        #expect(history.admit(k, candidate: nil, source: "s", now: later) == .new(deadline: later + .seconds(20)), "inside the first request's deadline: a new request drew its seqno")
        #expect(history.inconsistency == nil)
    }

    @Test("a copy that reached the host before the call-back is dropped even when a later packet (another listener's, a stream's) came first; a refused request's copies stay dropped past its deadline")
    func copiesJudgedByTheirOwnArrival() throws {
        var history = RequestHistory(limits: limits { $0.window = .seconds(2); $0.retransmissionHorizon = .seconds(60) })
        let answered = try key(seqno: 1)
        history.serve(answered, source: "s", now: start)
        _ = history.admit(try key(seqno: 4), candidate: nil, source: "t", now: start + .seconds(5))
        #expect(history.admit(answered, candidate: nil, source: "s", now: start - .milliseconds(100)) == .duplicate, "read late, from another socket")
        #expect(history.admit(answered, candidate: nil, source: "s", now: start + .seconds(5)) == .new(deadline: start + .seconds(25)))
        let refused = try key(seqno: 2)
        let rival = try key(seqno: 3)
        let endpoint = candidate("10.0.0.2")
        _ = history.admit(refused, candidate: endpoint, source: "10.0.0.2", now: start)
        #expect(history.admit(rival, candidate: endpoint, source: "10.0.0.2", now: start) == .conflict)
        #expect(history.admit(refused, candidate: endpoint, source: "10.0.0.2", now: start + .seconds(79)) == .duplicate, "its client may still be sending")
        #expect(history.inconsistency == nil)
    }

    @Test("after a failed call-back a later copy retries with the first deadline, rate-limited and a bounded number of times")
    func retries() throws {
        var history = RequestHistory(limits: limits { $0.attempts = 3 })
        let k = try key()
        let c = candidate("10.0.0.2")
        _ = history.admit(k, candidate: c, source: "10.0.0.2", now: start)
        _ = history.beginCallback(k, now: start)
        history.callbackFailed(k, now: start + .milliseconds(100))
        #expect(history.admit(k, candidate: c, source: "10.0.0.2", now: start + .milliseconds(200)) == .retryLimited, "too soon")
        #expect(history.admit(k, candidate: c, source: "10.0.0.2", now: start + .seconds(1)) == .retry(deadline: start + .seconds(20)))
        #expect(history.beginCallback(k, now: start + .seconds(1)) == .candidates([c]))
        history.callbackFailed(k, now: start + .seconds(1))
        #expect(history.admit(k, candidate: c, source: "10.0.0.2", now: start + .seconds(2)) == .retry(deadline: start + .seconds(20)))
        _ = history.beginCallback(k, now: start + .seconds(2))
        history.callbackFailed(k, now: start + .seconds(2))
        #expect(history.admit(k, candidate: c, source: "10.0.0.2", now: start + .seconds(5)) == .retryLimited, "three attempts in all")
    }

    @Test("a copy after the deadline is expired, and the request leaves the history once its retransmission horizon passed")
    func expiredLeaves() throws {
        var history = RequestHistory(limits: limits { $0.requestTimeout = .seconds(2); $0.retransmissionHorizon = .seconds(60) })
        let k = try key()
        _ = history.admit(k, candidate: nil, source: "s", now: start)
        _ = history.beginCallback(k, now: start)
        history.callbackFailed(k, now: start + .seconds(1))
        #expect(history.admit(k, candidate: nil, source: "s", now: start + .seconds(3)) == .expired)
        #expect(history.admit(k, candidate: nil, source: "s", now: start + .seconds(30)) == .expired)
        _ = history.admit(try key(seqno: 99), candidate: nil, source: "t", now: start + .seconds(63))
        #expect(history.count == 1, "only the newcomer is left")
    }

    @Test("requests whose owner never settled them leave after their deadline and the retransmission horizon")
    func abandonedLeave() throws {
        var history = RequestHistory(limits: limits { $0.requestTimeout = .seconds(2); $0.retransmissionHorizon = .seconds(60) })
        let gathering = try key(seqno: 1)
        let underWay = try key(seqno: 2)
        _ = history.admit(gathering, candidate: nil, source: "s", now: start)
        _ = history.admit(underWay, candidate: nil, source: "s", now: start)
        _ = history.beginCallback(underWay, now: start)
        _ = history.admit(try key(seqno: 3), candidate: nil, source: "s", now: start + .seconds(30))
        #expect(history.count == 3, "a request under way is kept past its deadline for the horizon")
        _ = history.admit(try key(seqno: 4), candidate: nil, source: "s", now: start + .seconds(63))
        #expect(history.count == 2)
    }

    @Test("one source cannot take more than its share; others are still admitted")
    func perSourceQuota() throws {
        var history = RequestHistory(limits: limits { $0.perSource = 3 })
        for seqno in 0..<3 {
            #expect(history.admit(try key(seqno: UInt32(seqno)), candidate: nil, source: "flooder", now: start) == .new(deadline: start + .seconds(20)))
        }
        #expect(history.admit(try key(seqno: 3), candidate: nil, source: "flooder", now: start) == .overQuota)
        #expect(history.admit(try key(seqno: 4), candidate: nil, source: "guest", now: start) == .new(deadline: start + .seconds(20)))
    }

    @Test("a busy guest whose requests are answered never runs out of its share: answered requests do not count")
    func answeredDoNotCount() throws {
        var history = RequestHistory(limits: limits { $0.perSource = 3; $0.capacity = 100; $0.window = .seconds(60) })
        for seqno in 0..<50 {
            let k = try key(seqno: UInt32(seqno))
            let now = start + .milliseconds(200 * seqno)
            #expect(history.admit(k, candidate: nil, source: "guest", now: now) == .new(deadline: now + .seconds(20)), "request \(seqno)")
            _ = history.beginCallback(k, now: now)
            history.finished(k, clientTook: now)
        }
        #expect(history.count == 50, "all remembered, for their late copies")
    }

    @Test("a full history gives up the oldest settled request of its largest holder, never one under way")
    func fullHistory() throws {
        var history = RequestHistory(limits: limits { $0.capacity = 4 })
        for seqno in 0..<3 {
            let k = try key(seqno: UInt32(seqno))
            history.serve(k, source: "flooder", now: start)
        }
        let guest = try key(seqno: 10)
        _ = history.admit(guest, candidate: nil, source: "guest", now: start)
        #expect(history.admit(try key(seqno: 11), candidate: nil, source: "newcomer", now: start) == .new(deadline: start + .seconds(20)))
        #expect(history.count == 4)
        #expect(history.admit(guest, candidate: nil, source: "guest", now: start) == .merged, "the guest's request is still there")
        #expect(history.admit(try key(seqno: 1), candidate: nil, source: "flooder", now: start) == .duplicate)
        #expect(history.admit(try key(seqno: 2), candidate: nil, source: "flooder", now: start) == .duplicate)
        // The one given up answers as a duplicate too (its tombstone), and room made for a new
        // request now comes from the flooder's next oldest, not from the guest.
        #expect(history.admit(try key(seqno: 0), candidate: nil, source: "flooder", now: start) == .duplicate,
                "the flooder's oldest request was the one forgotten, and a late copy of it never runs")
        #expect(history.admit(try key(seqno: 12), candidate: nil, source: "newcomer", now: start) == .new(deadline: start + .seconds(20)))
        #expect(history.admit(guest, candidate: nil, source: "guest", now: start) == .merged, "the guest's request is still there")
        #expect(history.inconsistency == nil, "\(history.inconsistency ?? "")")
        // Its tombstone lasts as long as its copies would have been dropped (the window after the
        // call-back): a new request that draws its key later is not dropped for ever.
        let later = start + HistoryLimits().window
        #expect(history.admit(try key(seqno: 0), candidate: nil, source: "flooder", now: later) == .new(deadline: later + .seconds(20)))
    }

    @Test("with everything under way, a full history refuses")
    func fullOfWork() throws {
        var history = RequestHistory(limits: limits { $0.capacity = 2 })
        for seqno in 0..<2 {
            let k = try key(seqno: UInt32(seqno))
            _ = history.admit(k, candidate: nil, source: "s\(seqno)", now: start)
            _ = history.beginCallback(k, now: start)
        }
        #expect(history.admit(try key(seqno: 5), candidate: nil, source: "t", now: start) == .full)
    }

    @Test("two different requests naming one endpoint are both refused, even one already under way")
    func endpointConflict() throws {
        var history = RequestHistory()
        let genuine = try key(seqno: 1, operation: .off)
        let replayed = try key(seqno: 2, operation: .deviceStatus)
        let endpoint = candidate("10.0.0.2")
        _ = history.admit(genuine, candidate: endpoint, source: "10.0.0.2", now: start)
        _ = history.beginCallback(genuine, now: start)
        #expect(history.mayExecute(genuine))
        #expect(history.admit(replayed, candidate: endpoint, source: "10.0.0.9", now: start + .milliseconds(1)) == .conflict)
        #expect(!history.mayExecute(genuine), "the request under way must not run now")
        #expect(history.beginCallback(replayed, now: start) == .refused)
        #expect(history.admit(replayed, candidate: endpoint, source: "10.0.0.9", now: start + .milliseconds(2)) == .duplicate)
        #expect(history.admit(try key(seqno: 3), candidate: candidate("10.0.0.3"), source: "10.0.0.3", now: start) == .new(deadline: start + .seconds(20)),
                "other endpoints are not affected")
    }

    @Test("the same port on another address, or an answered request, is no conflict")
    func noConflict() throws {
        var history = RequestHistory()
        let first = try key(seqno: 1)
        history.serve(first, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start)
        let second = try key(seqno: 2)
        #expect(history.admit(second, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start + .milliseconds(5)) == .new(deadline: start + .milliseconds(5) + .seconds(20)),
                "a client's next run after an answered one")
        #expect(history.admit(try key(seqno: 3), candidate: candidate("10.0.0.2", port: 1230), source: "10.0.0.2", now: start) != .conflict)
    }

    @Test("a request whose call-back failed conflicts only while its copies keep coming")
    func dormantRequest() throws {
        var history = RequestHistory()
        let old = try key(seqno: 1)
        let endpoint = candidate("10.0.0.2")
        _ = history.admit(old, candidate: endpoint, source: "10.0.0.2", now: start)
        _ = history.beginCallback(old, now: start)
        history.callbackFailed(old, now: start)
        let next = try key(seqno: 2)
        #expect(history.admit(next, candidate: endpoint, source: "10.0.0.2", now: start + .seconds(2)) == .new(deadline: start + .seconds(22)),
                "the earlier run stopped sending")
        #expect(history.admit(old, candidate: endpoint, source: "10.0.0.2", now: start + .seconds(3)) == .conflict,
                "but a copy of it now makes both ambiguous")
        #expect(!history.mayExecute(next))
    }

    @Test("too many call-backs under way from one source: the next waits for a later copy")
    func callbacksBusy() throws {
        var history = RequestHistory(limits: limits { $0.callbacksPerSource = 1 })
        let a = try key(seqno: 1)
        let b = try key(seqno: 2)
        _ = history.admit(a, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start)
        _ = history.admit(b, candidate: candidate("10.0.0.3"), source: "10.0.0.2", now: start)
        #expect(history.beginCallback(a, now: start) == .candidates([candidate("10.0.0.2")]))
        #expect(history.beginCallback(b, now: start) == .busy)
        history.finished(a, clientTook: start)
        #expect(history.admit(b, candidate: candidate("10.0.0.3"), source: "10.0.0.2", now: start + .seconds(1)) == .retry(deadline: start + .seconds(20)))
        #expect(history.beginCallback(b, now: start + .seconds(1)) == .candidates([candidate("10.0.0.3")]))
    }

    @Test("a refused request keeps its call-back slot until its task settles it")
    func refusedKeepsSlot() throws {
        var history = RequestHistory(limits: limits { $0.callbacksPerSource = 1 })
        let first = try key(seqno: 1)
        _ = history.admit(first, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start)
        _ = history.beginCallback(first, now: start)
        #expect(history.admit(try key(seqno: 2), candidate: candidate("10.0.0.2"), source: "10.0.0.7", now: start) == .conflict)
        #expect(!history.mayExecute(first), "it stops dialling")
        let next = try key(seqno: 3)
        _ = history.admit(next, candidate: candidate("10.0.0.3"), source: "10.0.0.2", now: start)
        #expect(history.beginCallback(next, now: start) == .busy, "the refused request's task is still at work")
        history.callbackFailed(first, now: start)
        #expect(history.admit(next, candidate: candidate("10.0.0.3"), source: "10.0.0.2", now: start + .seconds(1)) == .retry(deadline: start + .seconds(20)))
        #expect(history.beginCallback(next, now: start + .seconds(1)) == .candidates([candidate("10.0.0.3")]))
        #expect(history.inconsistency == nil, "\(history.inconsistency ?? "")")
    }

    @Test("in a conflict, the one request whose copy came from the address it names is kept")
    func ownCopyKept() throws {
        var history = RequestHistory()
        let genuine = try key(seqno: 1)
        let replayed = try key(seqno: 2, operation: .deviceStatus)
        _ = history.admit(genuine, candidate: candidate("10.0.0.2", matches: true), source: "10.0.0.2", now: start)
        _ = history.beginCallback(genuine, now: start)
        #expect(history.admit(replayed, candidate: candidate("10.0.0.2", matches: false), source: "10.0.0.66", now: start) == .conflict)
        #expect(history.mayExecute(genuine), "the client's own request goes on")
        #expect(history.beginCallback(replayed, now: start) == .refused)
        // Both from the address they name (a spoofed source): neither can be trusted.
        var spoofed = RequestHistory()
        _ = spoofed.admit(genuine, candidate: candidate("10.0.0.2", matches: true), source: "10.0.0.2", now: start)
        #expect(spoofed.admit(replayed, candidate: candidate("10.0.0.2", matches: true), source: "10.0.0.2", now: start) == .conflict)
        #expect(spoofed.beginCallback(genuine, now: start) == .refused)
    }

    @Test("a request given up to make room is not taken for new when a late copy comes")
    func evictedStayGone() throws {
        var history = RequestHistory(limits: limits { $0.capacity = 2 })
        let old = try key(seqno: 1)
        history.serve(old, source: "a", now: start)
        _ = history.admit(try key(seqno: 2), candidate: nil, source: "b", now: start)
        _ = history.admit(try key(seqno: 3), candidate: nil, source: "c", now: start)
        #expect(history.count == 2)
        #expect(history.admit(old, candidate: nil, source: "a", now: start) == .duplicate, "answered once, never run again")
        #expect(history.inconsistency == nil, "\(history.inconsistency ?? "")")
    }

    @Test("thousands of answered requests from one source leave the history in one purge, and the counts agree")
    func manyFromOneSource() throws {
        var history = RequestHistory(limits: limits { $0.capacity = 20_000 })
        for seqno in 0..<20_000 {
            let k = try key(seqno: UInt32(seqno))
            history.serve(k, candidate: candidate("10.0.0.2"), source: "10.0.0.2", now: start)
        }
        #expect(history.inconsistency == nil, "\(history.inconsistency ?? "")")
        _ = history.admit(try key(seqno: 99_999), candidate: nil, source: "other", now: start + .seconds(120))
        #expect(history.count == 1)
        #expect(history.inconsistency == nil, "\(history.inconsistency ?? "")")
    }
}

extension RequestHistory {
    /// A request admitted, called back and answered: the way a served request passes through.
    mutating func serve(_ key: RequestKey, candidate: CallbackCandidate? = nil, source: String, now: ContinuousClock.Instant) {
        _ = admit(key, candidate: candidate, source: source, now: now)
        _ = beginCallback(key, now: now)
        finished(key, clientTook: now)
    }
}
