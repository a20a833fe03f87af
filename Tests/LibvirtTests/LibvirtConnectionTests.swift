import Foundation
import Logging
import Synchronization
import Testing
import TestSupport
import FenceCore
import RequestThreads
@testable import Libvirt

/// The wrapper against libvirt's real test driver, in process (each connection to a host XML owns
/// a private copy of it).
@Suite("libvirt connection (test driver)")
struct LibvirtConnectionTests {
    let logger = Logger(label: "libvirt-test")
    var deadline: ContinuousClock.Instant { .now + .seconds(30) }

    func testnode() -> LibvirtConnection {
        LibvirtConnection(uri: "test://" + Fixtures.url("fence-xvm/testnode.xml").path, lifecycleEvents: true, logger: logger)
    }

    @Test("lists testnode.xml with names, UUIDs, states and persistence")
    func listsDomains() async throws {
        let connection = testnode()
        let domains = try await connection.listDomains(deadline: deadline).sorted { $0.name < $1.name }
        #expect(domains.map(\.name) == ["long-name-64-chars-" + String(repeating: "x", count: 45), "vm-off", "vm-paused", "vm1"])
        #expect(domains.map(\.state) == [.running, .shutOff, .paused, .running])
        #expect(domains.map(\.uuid) == [
            "0f0f0f0f-1111-2222-3333-444444444444", "11111111-2222-3333-4444-555555555555",
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "6695eb01-f6a4-8304-79aa-97f2502e193f",
        ])
        #expect(domains.allSatisfy { $0.persistent == true }, "a listing says")
    }

    @Test("looks up by name (case-sensitive) and UUID (any case); missing is nil, not an error")
    func lookups() async throws {
        let connection = testnode()
        #expect(try await connection.lookup(.name("vm1"), deadline: deadline)?.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f")
        #expect(try await connection.lookup(DomainTarget("6695EB01-F6A4-8304-79AA-97F2502E193F"), deadline: deadline)?.name == "vm1")
        #expect(try await connection.lookup(.name("VM1"), deadline: deadline) == nil)
        #expect(try await connection.lookup(.uuid("99999999-2222-3333-4444-555555555555"), deadline: deadline) == nil)
    }

    @Test("an action after a lookup within the window uses the lookup's handle; after the window, it looks the domain up again")
    func reusesTheLookup() async throws {
        let uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"
        for (window, lookups) in [(Duration.seconds(3600), 2), (.zero, 5)] {
            let connection = LibvirtConnection(
                uri: "test://" + Fixtures.url("fence-xvm/testnode.xml").path, lifecycleEvents: false, backoff: .seconds(1)...(.seconds(1)),
                calls: .shared, reuseWindow: window, logger: logger
            )
            #expect(try await connection.destroy(uuid: uuid, deadline: deadline) == .shutOff)
            #expect(connection.lookupsMade == 1, "no lookup before it: one of its own")
            #expect(try await connection.lookup(.name("vm1"), deadline: deadline)?.state == .shutOff)
            try await connection.start(uuid: uuid, deadline: deadline)
            #expect(try await connection.isPersistent(uuid: uuid, deadline: deadline))
            #expect(try await connection.destroy(uuid: uuid, deadline: deadline) == .shutOff)
            #expect(connection.lookupsMade == lookups, "window \(window): start, isPersistent and destroy after the lookup by name")
        }
    }

    @Test("a remembered handle whose domain is gone fails as a lookup would: no such domain")
    func reusedHandleOfAGoneDomain() async throws {
        let connection = LibvirtConnection(
            uri: "test://" + Fixtures.url("fence-xvm/testnode.xml").path, lifecycleEvents: false, backoff: .seconds(1)...(.seconds(1)),
            calls: .shared, reuseWindow: .seconds(3600), logger: logger
        )
        let xml = SimulatedDomain(name: "transient2", uuid: "12345678-0000-4000-8000-000000000002").xml
        try await connection.startTransient(xml: xml, deadline: deadline)
        let domain = try #require(try await connection.lookup(.name("transient2"), deadline: deadline))
        #expect(try await connection.destroy(uuid: domain.uuid, deadline: deadline) == nil, "gone with its destroy")
        let lookups = connection.lookupsMade
        let error = await #expect(throws: LibvirtError.self) { try await connection.destroy(uuid: domain.uuid, deadline: deadline) }
        #expect(error?.code == .noDomain)
        #expect(connection.lookupsMade == lookups, "the remembered handle was used")
    }

    @Test("destroy and start change the state and raise lifecycle events")
    func destroyStartAndEvents() async throws {
        let connection = testnode()
        let uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"
        #expect(try await connection.destroy(uuid: uuid, deadline: deadline) == .shutOff, "the state read with the destroy")
        #expect(try await connection.lookup(.uuid(uuid), deadline: deadline)?.state == .shutOff)
        try await connection.start(uuid: uuid, deadline: deadline)
        #expect(try await connection.lookup(.uuid(uuid), deadline: deadline)?.state == .running)

        let seen = try await withTimeout(.seconds(5), "three events") {
            var seen: [LibvirtEvent] = []
            for await event in connection.events {
                seen.append(event)
                if seen.count == 3 { break }
            }
            return seen
        }
        #expect(seen.first == .connected(generation: 1))
        guard case .lifecycle(let name, let eventUUID, let stopped, _) = seen[1], case .lifecycle(_, _, let started, _) = seen[2] else {
            Issue.record("unexpected events \(seen)")
            return
        }
        #expect(name == "vm1")
        #expect(eventUUID == uuid)
        #expect(stopped == .stopped)
        #expect(started == .started)
    }

    @Test("a transient domain vanishes when destroyed and comes back from its XML")
    func transientDomain() async throws {
        let connection = testnode()
        let xml = SimulatedDomain(name: "transient1", uuid: "12345678-0000-4000-8000-000000000001").xml
        try await connection.startTransient(xml: xml, deadline: deadline)
        let domain = try #require(try await connection.lookup(.name("transient1"), deadline: deadline))
        #expect(domain.persistent == nil, "a lookup does not ask unless told")
        #expect(try await connection.lookup(.name("transient1"), persistence: true, deadline: deadline)?.persistent == false)
        #expect(try await connection.isPersistent(uuid: domain.uuid, deadline: deadline) == false)
        #expect(domain.state == .running)
        let saved = try await connection.xmlDescription(uuid: domain.uuid, deadline: deadline)
        #expect(try await connection.destroy(uuid: domain.uuid, deadline: deadline) == nil, "gone, as read with the destroy")
        #expect(try await connection.lookup(.name("transient1"), deadline: deadline) == nil)
        try await connection.startTransient(xml: saved, deadline: deadline)
        #expect(try await connection.lookup(.name("transient1"), deadline: deadline)?.state == .running)
    }

    @Test("the fencing rules on the real test driver: reboot comes back, off stays off")
    func fencerOnTestDriver() async throws {
        let connection = testnode()
        let fencer = HypervisorFencer(hypervisors: [LibvirtHypervisor(connection: connection)], logger: logger)
        #expect(await fencer.perform(.reboot, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(try await connection.lookup(.name("vm1"), deadline: deadline)?.state == .running)
        #expect(await fencer.perform(.off, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(await fencer.perform(.status, on: DomainTarget("vm1"), deadline: deadline) == .off)
        #expect(await fencer.perform(.status, on: DomainTarget("vm-paused"), deadline: deadline) == .success)
        #expect(await fencer.perform(.status, on: DomainTarget("nope"), deadline: deadline) == .off)
        #expect(await fencer.perform(.on, on: DomainTarget("vm1"), deadline: deadline) == .success)
        #expect(await fencer.checkHealth(deadline: deadline) == .success)
    }

    @Test("a call still waiting for a thread when its deadline passes never starts")
    func queuedPastDeadline() async throws {
        let calls = BlockingCalls(threads: 1)
        let connection = LibvirtConnection(
            uri: "test://" + Fixtures.url("fence-xvm/testnode.xml").path, lifecycleEvents: false,
            backoff: .milliseconds(250)...(.seconds(1)), calls: calls, logger: logger
        )
        try await connection.open(deadline: deadline)
        let uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"
        // The only thread is held until the destroy has failed at its deadline, waiting in the
        // queue (not for a fixed time: on a loaded machine the test may see the hold late).
        final class Gate: Sendable {
            let holding = Atomic(false)
            let released = Atomic(false)
        }
        let gate = Gate()
        async let busy: Void = calls.run("hold the thread", deadline: deadline) {
            gate.holding.store(true, ordering: .sequentiallyConsistent)
            while !gate.released.load(ordering: .sequentiallyConsistent) { usleep(1_000) }
        }
        while !gate.holding.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(1)) }
        await #expect(throws: LibvirtError.self) {
            try await connection.destroy(uuid: uuid, deadline: .now + .milliseconds(100))
        }
        gate.released.store(true, ordering: .sequentiallyConsistent)
        try await busy
        #expect(try await connection.lookup(.uuid(uuid), deadline: deadline)?.state == .running, "the late destroy never ran")
    }

    @Test("on a request's own thread a call runs there; one that outlasts its deadline fails at it, the request goes on on a new thread, and few threads are left stuck so")
    func requestThread() async throws {
        let calls = BlockingCalls(threads: 1)
        final class Gate: Sendable {
            let released = Atomic(false)
        }
        let gate = Gate()
        let budget = BlockingBudget(limit: 8)
        let thread = try #require(RequestThread(budget: budget))
        defer { thread.stop() }
        let (ranThere, hung, stillHung) = await withTaskGroup { group in
            // Without the rescue the request would wait for its stuck calls: let them go after a
            // while, so that the test fails rather than hangs.
            group.addTask {
                try? await Task.sleep(for: .seconds(30))
                gate.released.store(true, ordering: .sequentiallyConsistent)
            }
            defer { group.cancelAll() }
            return await withTaskExecutorPreference(thread) {
                await thread.hosting {
                    let requestThread = pthread_self()
                    let ranThere = try? await calls.run("where", deadline: deadline) { pthread_equal(pthread_self(), requestThread) != 0 }
                    // More stuck calls than the budget: the last one goes to the pool.
                    var hung: [LibvirtError?] = []
                    for _ in 0...budget.limit {
                        do throws(LibvirtError) {
                            try await calls.run("hang", deadline: .now + .milliseconds(500)) {
                                while !gate.released.load(ordering: .sequentiallyConsistent) { usleep(1_000) }
                            }
                            hung.append(nil)
                        } catch {
                            hung.append(error)
                        }
                    }
                    return (ranThere, hung, !gate.released.load(ordering: .sequentiallyConsistent))
                }
            }
        }
        gate.released.store(true, ordering: .sequentiallyConsistent)
        #expect(ranThere == true, "the call ran on the request's thread")
        #expect(hung.map { $0?.code } == Array(repeating: .timedOut, count: budget.limit + 1))
        #expect(stillHung, "the request went on while its calls were still stuck")
        #expect(thread.rescues == budget.limit, "\(budget.limit) calls held on request threads, each rescued; the one past the budget went to the bounded pool")
    }

    @Test("an unreachable URI fails to connect, then waits out the backoff without retrying")
    func unreachable() async throws {
        // A backoff far longer than any test run: the second call falls inside it however slow the machine.
        let connection = LibvirtConnection(uri: "test:///nonexistent/host.xml", backoff: .seconds(3600)...(.seconds(3600)), logger: logger)
        await #expect(throws: LibvirtError.self) { try await connection.ping(deadline: deadline) }
        let error = await #expect(throws: LibvirtError.self) { try await connection.ping(deadline: deadline) }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("next attempt in") == true)
        let failure = LibvirtError(code: .connectionLost, operation: "x", message: "y").asFenceFailure
        #expect(failure.code == .hypervisorUnavailable)
    }

    @Test("a libvirt that never answers is given up on at the deadline")
    func deadline() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-silent")
        let path = directory.path("silent.sock")
        // A listening unix socket that never answers: libvirt's handshake blocks forever.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        #expect(listen(fd, 4) == 0)

        let connection = LibvirtConnection(uri: "test+unix:///default?socket=\(path)", logger: logger)
        let started = ContinuousClock.now
        do {
            try await connection.ping(deadline: .now + .milliseconds(500))
            Issue.record("a silent libvirt answered")
        } catch {
            #expect(error.code == .timedOut)
        }
        // Without the deadline this call would never return; the bound only proves it did (not
        // how fast: a CI machine starting labs beside this test once took 7 s for the 0.5 s).
        #expect(ContinuousClock.now - started < .seconds(60))
    }
}

/// Connection loss against a real libvirtd serving the test driver (platform notes §7).
@Suite("libvirt connection loss (real libvirtd)", .enabled(if: TestEnvironment.shouldRun(Prerequisite.libvirtd), "needs libvirtd and virsh"))
struct LibvirtReconnectTests {
    @Test("a lost libvirtd fails calls (never an answer) and the connection comes back after a restart")
    func reconnects() async throws {
        try TestEnvironment.require(Prerequisite.libvirtd)
        let directory = try TemporaryDirectory(prefix: "fr-libvirtd")
        let daemon = try LibvirtdProcess(directory: directory.url)
        try await daemon.start()
        let logger = Logger(label: "reconnect")
        let connection = LibvirtConnection(uri: daemon.uri, lifecycleEvents: true, backoff: .milliseconds(100)...(.milliseconds(400)), logger: logger)
        let hypervisor = LibvirtHypervisor(connection: connection)
        let xml = directory.url.appendingPathComponent("guest.xml")
        try SimulatedDomain(name: "guest1", uuid: "12345678-0000-4000-8000-00000000000a").xml.write(to: xml, atomically: true, encoding: .utf8)
        // libvirtd keeps test:///default only while a connection is open: ours first, then virsh.
        try await connection.open(deadline: .now + .seconds(5))
        try await daemon.virsh("define", xml.path)
        #expect(try await connection.lookup(.name("guest1"), deadline: .now + .seconds(5))?.state == .shutOff)

        await daemon.stop()
        for _ in 0..<3 {
            do {
                _ = try await hypervisor.lookup(.name("guest1"), deadline: .now + .seconds(5))
                Issue.record("a call answered while libvirtd was down")
            } catch {
                #expect(error.code == .hypervisorUnavailable, "\(error)")
            }
        }

        try await daemon.start()
        var reconnected = false
        for _ in 0..<50 where !reconnected {
            reconnected = (try? await connection.ping(deadline: .now + .seconds(5))) != nil
            if !reconnected { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(reconnected)
        // The restarted libvirtd lost every domain, like a rebooted host; define it again.
        #expect(try await connection.lookup(.name("guest1"), deadline: .now + .seconds(5)) == nil)
        try await daemon.virsh("define", xml.path)
        #expect(try await connection.lookup(.name("guest1"), deadline: .now + .seconds(5))?.state == .shutOff)
        let generations = try await withTimeout(.seconds(5), "two connected events") {
            var generations: [UInt64] = []
            for await event in connection.events {
                if case .connected(let generation) = event { generations.append(generation) }
                if generations.count == 2 { break }
            }
            return generations
        }
        #expect(generations == [1, 2])
    }
}
