import Logging
import Synchronization
import Testing
import TestSupport
@testable import FenceCore

@Suite("Single-host fencing rules (fake hypervisor)")
struct HypervisorFencerTests {
    static let running = DomainInfo(name: "vm1", uuid: "6695EB01-F6A4-8304-79AA-97F2502E193F", state: .running, persistent: true)
    static let shutOff = DomainInfo(name: "vm-off", uuid: "11111111-2222-3333-4444-555555555555", state: .shutOff, persistent: true)
    static let paused = DomainInfo(name: "vm-paused", uuid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", state: .paused, persistent: true)
    static let crashed = DomainInfo(name: "vm-crashed", uuid: "cccccccc-bbbb-cccc-dddd-eeeeeeeeeeee", state: .crashed, persistent: true)
    static let transient = DomainInfo(name: "vm-transient", uuid: "dddddddd-bbbb-cccc-dddd-eeeeeeeeeeee", state: .running, persistent: false)

    let logger = Logger(label: "test")
    var deadline: ContinuousClock.Instant { .now + .seconds(30) }

    func make(_ behaviour: FakeHypervisor.Behaviour = .init()) -> (FakeHypervisor, HypervisorFencer) {
        let fake = FakeHypervisor(domains: [Self.running, Self.shutOff, Self.paused, Self.crashed, Self.transient], behaviour: behaviour)
        return (fake, HypervisorFencer(hypervisors: [fake], offWaitLimit: .milliseconds(300), logger: logger))
    }

    @Test("status: unknown and shut off are off; running, paused and crashed are on")
    func status() async {
        let (_, fencer) = make()
        #expect(await fencer.perform(.status, on: DomainTarget("missing"), deadline: deadline) == .off)
        #expect(await fencer.perform(.status, on: DomainTarget("vm-off"), deadline: deadline) == .off)
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(await fencer.perform(.status, on: DomainTarget("vm-paused"), deadline: deadline) == .success)
        #expect(await fencer.perform(.status, on: DomainTarget("vm-crashed"), deadline: deadline) == .success)
    }

    @Test("what a host agent reports: the domain as read under its lock after acting, without another read")
    func observed() async {
        let (fake, fencer) = make()
        let status = await fencer.performObserving(.status, on: DomainTarget("vm1"), deadline: deadline)
        #expect(status.outcome == .success && status.observed?.state == .running)
        #expect(fake.calls.filter { $0.hasPrefix("lookup") }.count == 2, "find, then read once under the lock: \(fake.calls)")
        let off = await fencer.performObserving(.off, on: DomainTarget("vm1"), deadline: deadline)
        #expect(off.outcome == .success && off.observed?.state == .shutOff)
        let on = await fencer.performObserving(.on, on: DomainTarget("vm1"), deadline: deadline)
        #expect(on.outcome == .success && on.observed?.state == .running)
        let missing = await fencer.performObserving(.status, on: DomainTarget("missing"), deadline: deadline)
        #expect(missing.outcome == .off && missing.observed == nil)
        let gone = await fencer.performObserving(.off, on: DomainTarget("vm-transient"), deadline: deadline)
        #expect(gone.outcome == .success && gone.observed == nil, "a transient domain is gone once destroyed")
    }

    @Test("an unreachable hypervisor is a failure, never off")
    func unreachableIsFailure() async {
        let (_, fencer) = make(.init(unreachable: true))
        for action in FenceAction.allCases {
            let outcome = await fencer.perform(action, on: DomainTarget("vm1"), deadline: deadline)
            #expect(outcome == .failed(FenceFailure(.hypervisorUnavailable, "fake hypervisor unreachable")), "\(action)")
        }
        #expect(await fencer.checkHealth(deadline: deadline) != .success)
    }

    @Test("off: unknown fails, shut off succeeds untouched, running is destroyed and confirmed")
    func off() async {
        let (fake, fencer) = make()
        guard case .failed(let failure) = await fencer.perform(.off, on: DomainTarget("missing"), deadline: deadline) else {
            Issue.record("off of an unknown domain did not fail")
            return
        }
        #expect(failure.code == .notFound)
        #expect(await fencer.perform(.off, on: DomainTarget("vm-off"), deadline: deadline) == .success)
        #expect(!fake.calls.contains { $0.hasPrefix("destroy") })
        #expect(await fencer.perform(.off, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(fake.state(of: "vm1") == .shutOff)
    }

    @Test("off that does not take effect fails instead of claiming success")
    func offNotConfirmed() async {
        let (fake, fencer) = make(.init(destroyIsIgnored: true))
        let outcome = await fencer.perform(.off, on: DomainTarget("vm1"), deadline: deadline)
        guard case .failed(let failure) = outcome else {
            Issue.record("reported \(outcome) while the domain still runs")
            return
        }
        #expect(failure.code == .stillRunning)
        #expect(fake.state(of: "vm1") == .running)
    }

    @Test("on: unknown fails, running succeeds untouched, shut off is started")
    func on() async {
        let (fake, fencer) = make()
        #expect(await fencer.perform(.on, on: DomainTarget("missing"), deadline: deadline) != .success)
        #expect(await fencer.perform(.on, on: DomainTarget("vm-paused"), deadline: deadline) == .success)
        #expect(!fake.calls.contains { $0.hasPrefix("start") })
        #expect(await fencer.perform(.on, on: DomainTarget("vm-off"), deadline: deadline) == .success)
        #expect(fake.state(of: "vm-off") == .running)

        let (_, failing) = make(.init(startFails: true))
        #expect(await failing.perform(.on, on: DomainTarget("vm-off"), deadline: deadline) != .success)
    }

    @Test("reboot: off stays off; persistent and transient domains come back; a failed restart still fenced")
    func reboot() async {
        let (fake, fencer) = make()
        #expect(await fencer.perform(.reboot, on: DomainTarget("missing"), deadline: deadline) != .success)
        #expect(await fencer.perform(.reboot, on: DomainTarget("vm-off"), deadline: deadline) == .success)
        #expect(fake.state(of: "vm-off") == .shutOff)

        #expect(await fencer.perform(.reboot, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(fake.state(of: "vm1") == .running)
        #expect(fake.calls.contains("destroy \(Self.running.uuid)"))
        #expect(fake.calls.contains("start \(Self.running.uuid)"))

        #expect(await fencer.perform(.reboot, on: DomainTarget("vm-transient"), deadline: deadline) == .success)
        #expect(fake.state(of: "vm-transient") == .running)
        #expect(fake.calls.contains("startTransient"))
        #expect(fake.calls.filter { $0.hasPrefix("isPersistent") } == ["isPersistent \(Self.running.uuid)", "isPersistent \(Self.transient.uuid)"],
                "a reboot of a running domain asks; nothing else does")

        let (failingFake, failing) = make(.init(startFails: true))
        #expect(await failing.perform(.reboot, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(failingFake.state(of: "vm1") == .shutOff)
    }

    @Test("status, off and on do not ask whether the domain is persistent (a round trip to libvirtd each)")
    func noPersistenceRead() async {
        let (fake, fencer) = make()
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(await fencer.perform(.off, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(await fencer.perform(.on, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(!fake.calls.contains { $0.hasPrefix("isPersistent") }, "\(fake.calls)")
    }

    @Test("UUID targets match case-insensitively, names case-sensitively")
    func targets() async {
        let (_, fencer) = make()
        #expect(await fencer.perform(.status, on: DomainTarget("6695eb01-f6a4-8304-79aa-97f2502e193f"), deadline: deadline) == .success)
        #expect(await fencer.perform(.status, on: DomainTarget("6695EB01-F6A4-8304-79AA-97F2502E193F"), deadline: deadline) == .success)
        #expect(await fencer.perform(.status, on: DomainTarget("VM1"), deadline: deadline) == .off)
        #expect(DomainTarget("6695eb01-f6a4-8304-79aa-97f2502e193") == .name("6695eb01-f6a4-8304-79aa-97f2502e193"))
        #expect(DomainTarget("6695eb01-f6a4-8304-79aa-97f2502e193g") == .name("6695eb01-f6a4-8304-79aa-97f2502e193g"))
        #expect(DomainTarget("6695eb01f-6a4-8304-79aa-97f2502e193f") == .name("6695eb01f-6a4-8304-79aa-97f2502e193f"))
    }

    @Test("several connections: the first that knows the domain acts; list merges them all")
    func severalHypervisors() async throws {
        let a = FakeHypervisor(name: "a", domains: [Self.running])
        let b = FakeHypervisor(name: "b", domains: [Self.shutOff, DomainInfo(name: "vm1", uuid: "99999999-2222-3333-4444-555555555555", state: .shutOff, persistent: true)])
        let fencer = HypervisorFencer(hypervisors: [a, b], logger: logger)
        #expect(await fencer.perform(.on, on: DomainTarget("vm-off"), deadline: deadline) == .success)
        #expect(b.state(of: "vm-off") == .running)
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(try await fencer.listDomains(deadline: deadline).count == 3)
    }

    @Test("requests for one domain run one at a time; different domains run together")
    func serialisation() async {
        let fake = FakeHypervisor(
            domains: [Self.running, Self.paused],
            behaviour: .init(destroyDuration: .milliseconds(100))
        )
        let fencer = HypervisorFencer(hypervisors: [fake], logger: logger)
        let deadline = self.deadline
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask { _ = await fencer.perform(.reboot, on: DomainTarget("vm1"), deadline: deadline) }
                group.addTask { _ = await fencer.perform(.reboot, on: DomainTarget("vm-paused"), deadline: deadline) }
            }
        }
        let record = fake.record.withLock { $0 }
        #expect(record.maximumConcurrentDestroys[Self.running.uuid] == 1)
        #expect(record.maximumConcurrentDestroys[Self.paused.uuid] == 1)
        #expect(record.maximumOverall == 2)
        #expect(record.calls.filter { $0.hasPrefix("destroy") }.count == 6)
    }

    @Test("a name redefined with a new UUID is found anew, not acted on through the old UUID")
    func redefinedName() async {
        let fake = FakeHypervisor(domains: [Self.running])
        let fencer = HypervisorFencer(hypervisors: [fake], logger: logger)
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .success)
        let replacement = DomainInfo(name: "vm1", uuid: "12121212-2222-3333-4444-555555555555", state: .shutOff, persistent: true)
        fake.record.withLock { $0.domains = [replacement] }
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .off)
        #expect(await fencer.perform(.on, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(fake.calls.contains("start \(replacement.uuid)"))
        fake.record.withLock { $0.domains = [] }
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .off)
        #expect(await fencer.perform(.off, on: DomainTarget("vm1"), deadline: deadline) != .success)
    }

    @Test("requests naming one domain by name and by UUID still run one at a time")
    func nameAndUUIDSerialised() async {
        let fake = FakeHypervisor(domains: [Self.running], behaviour: .init(destroyDuration: .milliseconds(50)))
        let fencer = HypervisorFencer(hypervisors: [fake], logger: logger)
        let deadline = self.deadline
        // Warm the remembered locations for both forms.
        _ = await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline)
        _ = await fencer.perform(.status, on: DomainTarget(Self.running.uuid), deadline: deadline)
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<6 {
                let target = DomainTarget(index.isMultiple(of: 2) ? "vm1" : Self.running.uuid)
                group.addTask { _ = await fencer.perform(.reboot, on: target, deadline: deadline) }
            }
        }
        let record = fake.record.withLock { $0 }
        #expect(record.maximumConcurrentDestroys[Self.running.uuid] == 1)
        #expect(record.calls.filter { $0.hasPrefix("destroy") }.count == 6)
    }

    @Test("a request that waits past its deadline is dropped and never executed")
    func deadlineWhileWaiting() async throws {
        // The first request's destroy holds vm1's lock until the late request has answered.
        let gate = FakeHypervisor.Gate()
        let fake = FakeHypervisor(domains: [Self.running], behaviour: .init(destroyGate: gate))
        let fencer = HypervisorFencer(hypervisors: [fake], logger: logger)
        async let first = fencer.perform(.off, on: DomainTarget("vm1"), deadline: .now + .seconds(60))
        try await waitUntil("the first request's destroy under way") { gate.arrivals == 1 }
        let late = await fencer.perform(.on, on: DomainTarget("vm1"), deadline: .now + .milliseconds(100))
        gate.open()
        #expect(late.description == "failed(deadline-exceeded)", "the late request answered \(late)")
        #expect(await first == .success)
        #expect(!fake.calls.contains { $0.hasPrefix("start") })
        #expect(fake.state(of: "vm1") == .shutOff)
    }
}

@Suite("Keyed serialiser and access policy")
struct SerializerAndPolicyTests {
    /// Holds `key` from a task of its own until `release` yields; returns once it is held.
    private func hold(_ key: String, of serializer: KeyedSerializer<String>) async -> (holder: Task<Void?, Never>, release: AsyncStream<Void>.Continuation) {
        let (held, holding) = AsyncStream<Void>.makeStream()
        let (released, release) = AsyncStream<Void>.makeStream()
        let holder = Task {
            await serializer.withExclusiveAccess(to: key, until: .now + .seconds(600)) {
                holding.yield()
                for await _ in released { break }
            }
        }
        for await _ in held { break }
        return (holder, release)
    }

    // The waiters' deadlines are far: only their cancellation can end their wait.

    @Test("a cancelled waiter leaves the queue and the key is freed")
    func cancellation() async throws {
        let serializer = KeyedSerializer<String>()
        let (holder, release) = await hold("k", of: serializer)
        let waiter = Task { await serializer.withExclusiveAccess(to: "k", until: .now + .seconds(600)) { true } }
        try await waitUntil("the waiter queued") { serializer.queuedWaiters == 1 }
        waiter.cancel()
        // Released before the waiter is awaited: one still queued would be granted the key.
        release.yield()
        _ = await holder.value
        #expect(await waiter.value == nil)
        #expect(serializer.heldKeys == 0)
        #expect(await serializer.withExclusiveAccess(to: "k", until: .now + .seconds(1)) { 7 } == 7)
    }

    @Test("a waiter cancelled before it joins the queue gives up at once")
    func cancelledBeforeQueueing() async throws {
        final class Flag: Sendable {
            let raised = Atomic(false)
        }
        let serializer = KeyedSerializer<String>()
        let (holder, release) = await hold("k", of: serializer)
        let answered = Flag()
        let waiter = Task {
            defer { answered.raised.store(true, ordering: .sequentiallyConsistent) }
            withUnsafeCurrentTask { $0?.cancel() }
            return await serializer.withExclusiveAccess(to: "k", until: .now + .seconds(600)) { true }
        }
        // A waiter whose cancellation was lost sits in the queue instead: released then, it runs.
        try await waitUntil("the cancelled waiter answered or queued") {
            answered.raised.load(ordering: .sequentiallyConsistent) || serializer.queuedWaiters > 0
        }
        release.yield()
        _ = await holder.value
        #expect(await waiter.value == nil)
        #expect(serializer.heldKeys == 0)
    }

    @Test("groups: open without groups; names, UUIDs and sources compare case-insensitively")
    func policy() {
        #expect(AccessPolicy(groups: []).allows(source: "10.0.0.1", target: "anything"))
        let policy = AccessPolicy(groups: [
            .init(sources: ["10.0.0.1", "FD00::1"], members: ["vm1", "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"]),
            .init(sources: ["10.0.0.2"], members: ["vm2"]),
        ])
        #expect(policy.allows(source: "10.0.0.1", target: "VM1"))
        #expect(policy.allows(source: "fd00::1", target: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"))
        #expect(!policy.allows(source: "10.0.0.1", target: "vm2"))
        #expect(!policy.allows(source: "10.0.0.3", target: "vm1"))
        let domains = [
            DomainInfo(name: "vm1", uuid: "11111111-bbbb-cccc-dddd-eeeeeeeeeeee", state: .running, persistent: true),
            DomainInfo(name: "other", uuid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", state: .running, persistent: true),
            DomainInfo(name: "vm2", uuid: "22222222-bbbb-cccc-dddd-eeeeeeeeeeee", state: .running, persistent: true),
        ]
        #expect(policy.visible(to: "10.0.0.1", domains).map(\.name) == ["vm1", "other"])
        #expect(policy.visible(to: "10.0.0.9", domains).isEmpty)
    }
}

@Suite("Log formatting")
struct DurationTextTests {
    @Test("milliseconds with one decimal, for short and long durations")
    func milliseconds() {
        #expect(Duration.microseconds(1_234).millisecondsText == "1.2")
        #expect(Duration.zero.millisecondsText == "0.0")
        #expect(Duration.seconds(20).millisecondsText == "20000.0")
        #expect(Duration.seconds(3600).millisecondsText == "3600000.0")
    }

}

extension HypervisorFencerTests {
    // MARK: - Several connections (uri, uri1, …)

    static let shared = "8c1d5b2e-0000-4000-8000-000000000001"

    func several(_ first: DomainState?, _ second: DomainState?, _ behaviours: (FakeHypervisor.Behaviour, FakeHypervisor.Behaviour) = (.init(), .init())) -> (FakeHypervisor, FakeHypervisor, HypervisorFencer) {
        func domains(_ state: DomainState?) -> [DomainInfo] {
            state.map { [DomainInfo(name: "shared", uuid: Self.shared, state: $0, persistent: true)] } ?? []
        }
        let a = FakeHypervisor(name: "uri", domains: domains(first), behaviour: behaviours.0)
        let b = FakeHypervisor(name: "uri1", domains: domains(second), behaviour: behaviours.1)
        return (a, b, HypervisorFencer(hypervisors: [a, b], offWaitLimit: .milliseconds(300), logger: logger))
    }

    @Test("several connections: status is on while the domain runs on any of them, off only when off on all")
    func severalStatus() async {
        #expect(await several(.shutOff, .running).2.perform(.status, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(await several(.running, .shutOff).2.perform(.status, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(await several(.shutOff, .shutOff).2.perform(.status, on: DomainTarget("shared"), deadline: deadline) == .off)
        #expect(await several(nil, .running).2.perform(.status, on: DomainTarget(Self.shared), deadline: deadline) == .success)
        #expect(await several(nil, nil).2.perform(.status, on: DomainTarget("shared"), deadline: deadline) == .off)
    }

    @Test("several connections: one that cannot answer makes status a failure, never off")
    func severalUnreachable() async {
        let (_, _, fencer) = several(.shutOff, .running, (.init(), .init(unreachable: true)))
        guard case .failed = await fencer.perform(.status, on: DomainTarget("shared"), deadline: deadline) else {
            Issue.record("a silent connection was taken for off")
            return
        }
        guard case .failed = await fencer.perform(.off, on: DomainTarget("shared"), deadline: deadline) else {
            Issue.record("off succeeded without hearing every connection")
            return
        }
    }

    @Test("several connections: off destroys the domain wherever it runs and confirms every one")
    func severalOff() async {
        let (a, b, fencer) = several(.shutOff, .running)
        #expect(await fencer.perform(.off, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(a.state(of: "shared") == .shutOff)
        #expect(b.state(of: "shared") == .shutOff)
        #expect(!a.calls.contains { $0.hasPrefix("destroy") }, "not destroyed where it was off already")
        let (_, stubborn, stubbornFencer) = several(.running, .running, (.init(), .init(destroyIsIgnored: true)))
        #expect(await stubbornFencer.perform(.off, on: DomainTarget("shared"), deadline: deadline) != .success, "one still runs: failure")
        #expect(stubborn.state(of: "shared") == .running)
    }

    @Test("several connections: on starts the domain only where none runs it, on the first that has it")
    func severalOn() async {
        let (a, _, fencer) = several(.shutOff, .running)
        #expect(await fencer.perform(.on, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(a.state(of: "shared") == .shutOff, "it runs on uri1 already: not started twice")
        let (c, d, offFencer) = several(.shutOff, .shutOff)
        #expect(await offFencer.perform(.on, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(c.state(of: "shared") == .running)
        #expect(d.state(of: "shared") == .shutOff)
    }

    @Test("several connections: reboot restarts the domain where it ran; running in two places, it is fenced on both and started on none")
    func severalReboot() async {
        let (a, b, fencer) = several(.shutOff, .running)
        #expect(await fencer.perform(.reboot, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(a.state(of: "shared") == .shutOff)
        #expect(b.state(of: "shared") == .running)
        #expect(b.calls.contains { $0.hasPrefix("destroy") })
        let (c, d, twice) = several(.running, .running)
        #expect(await twice.perform(.reboot, on: DomainTarget("shared"), deadline: deadline) == .success)
        #expect(c.state(of: "shared") == .shutOff)
        #expect(d.state(of: "shared") == .shutOff)
    }
}
