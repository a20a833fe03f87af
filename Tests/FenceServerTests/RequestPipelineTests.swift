import Foundation
import Glibc
import FenceConfig
import FenceCore
import FenceWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TestSupport
@testable import FenceServer

/// The pipeline's own guarantees, with loopback call-backs to a fake client.
@Suite("Request pipeline")
struct RequestPipelineTests {
    static let key = FenceKey(fileContents: Array("pipeline-test-key".utf8))
    let credentials = ListenerCredentials(key: RequestPipelineTests.key, security: ListenerSecurity())

    /// `streamRequestTimeout`: longer than the daemon's second in the tests that are not about
    /// it, so that a stalled machine does not drop their stream before its request is read.
    func pipeline(
        _ backend: RecordingBackend, timeout: Duration = .seconds(5), streamRequestTimeout: Duration = .seconds(1), replays: ReplayJournal? = nil
    ) -> RequestPipeline {
        var timing = FrontEndTiming()
        timing.requestTimeout = timeout
        timing.streamRequestTimeout = streamRequestTimeout
        let logger = Logger(label: "pipeline-test")
        return RequestPipeline(
            backend: backend, policy: AccessPolicy(groups: []), timing: timing,
            replays: replays ?? ReplayJournal(inMemoryCapacity: 1024, logger: logger), statistics: FrontEndStatistics(),
            drops: .packets(logger: logger), logger: logger
        )
    }

    func datagram(_ operation: FenceOperation = .off, domain: String = "vm-a", to address: String, port: Int, seqno: UInt32 = 77) throws -> [UInt8] {
        var request = try FenceRequest(operation: operation, hash: .sha256, domain: domain, callback: CallbackAddress(address), port: UInt16(port), seqno: seqno)
        request.sign(key: Self.key, random: (0..<6).map { _ in .random(in: .min ... .max) })
        return request.bytes
    }

    @Test("the multicast listener ends when its task is cancelled (as when another service fails), not only at a graceful shutdown")
    func listenerEndsOnCancellation() async throws {
        let pipeline = pipeline(RecordingBackend())
        var settings = MulticastListenerSettings()
        settings.group = try #require(CallbackAddress("239.255.42.99"))
        settings.port = 0
        settings.interface = "lo"   // joined on loopback: nothing is sent anywhere
        let listener = try MulticastListener.bind(settings: settings, credentials: credentials, pipeline: pipeline, logger: Logger(label: "pipeline-test"))
        final class Ended: Sendable { let value = Atomic(false) }
        let ended = Ended()
        let running = Task {
            try? await listener.run()
            ended.value.store(true, ordering: .sequentiallyConsistent)
        }
        // A datagram to its port on loopback, dropped as malformed: the listener waits in its receive.
        let sender = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(sender) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: listener.port.bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(sender, [UInt8](repeating: 1, count: 10), 10, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(sent == 10)
        try await waitUntil("the datagram dropped") { pipeline.statistics.snapshot.dropped.values.reduce(0, +) == 1 }
        running.cancel()
        try await waitUntil("the listener ended") { ended.value.load(ordering: .sequentiallyConsistent) }
    }

    @Test("copies are merged before the call-back: one call-back, one execution, one answer")
    func duplicatesBeforeCallback() async throws {
        let client = try await FakeFenceClient(key: Self.key)
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        let first = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        for _ in 0..<3 {
            #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        }
        await pipeline.serveDatagram(first)
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        await client.close()
        #expect(client.callbacks == 1)
        #expect(client.received == [[ResponseCode.success.rawValue]])
        #expect(backend.calls == ["off vm-a"])
        #expect(pipeline.statistics.snapshot.dropped[.duplicate] == 4)
        #expect(pipeline.statistics.snapshot.answered["off/success"] == 1)
    }

    @Test("an answered request's copy is judged by when it reached the host: dropped if before the answer however late it is read, new once the window has passed")
    func copiesJudgedByArrival() async throws {
        let client = try await FakeFenceClient(key: Self.key)
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        let arrived = ContinuousClock.now
        let first = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials, arrival: arrived))
        await pipeline.serveDatagram(first)
        let answered = ContinuousClock.now
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials, arrival: arrived) == nil)
        #expect(pipeline.statistics.snapshot.dropped[.duplicate] == 1)
        // The same op, domain and seqno from a client that started after the window (fence_xvm
        // draws its seqno from the clock's microseconds): a new request, answered too.
        let again = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials, arrival: answered + FrontEndTiming().duplicateWindow))
        await pipeline.serveDatagram(again)
        await client.close()
        #expect(client.callbacks == 2)
        #expect(backend.calls == ["off vm-a", "off vm-a"])
    }

    @Test("an answered request's window runs from when its client took the call-back, not from the answer: a slow request does not stretch it")
    func windowFromTheCallBack() async throws {
        let client = try await FakeFenceClient(key: Self.key)
        final class Began: Sendable { let at = Mutex<ContinuousClock.Instant?>(nil) }
        let began = Began()
        let backend = RecordingBackend(hangsUntilDeadline: true, beginning: { began.at.withLock { $0 = .now } })
        // The deadline 3 s after the window: the call-back and authentication may take as long
        // on a stalled machine before the request runs.
        let pipeline = pipeline(backend, timeout: FrontEndTiming().duplicateWindow + .seconds(3))
        let first = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        await pipeline.serveDatagram(first)
        await client.close()
        let running = try #require(began.at.withLock { $0 }, "the request ran, after the client authenticated")
        #expect(ContinuousClock.now - running > FrontEndTiming().duplicateWindow, "answered at its deadline, after the window")
        // A copy that reached the host the window after the client authenticated, though well
        // before the answer: a new request that drew the same seqno.
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials,
                               arrival: running + FrontEndTiming().duplicateWindow) != nil)
    }

    @Test("a request's packet is in the journal before the request runs")
    func journalledBeforeRunning() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-pipeline")
        let journal = directory.path("seen-packets")
        final class Sizes: Sendable { let atRun = Mutex<[Int]>([]) }
        let sizes = Sizes()
        let backend = RecordingBackend(beginning: {
            let size = (try? FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int) ?? -1
            sizes.atRun.withLock { $0.append(size) }
        })
        let pipeline = pipeline(backend, replays: try ReplayJournal(directory: directory.url.path, logger: Logger(label: "pipeline-test")))
        let client = try await FakeFenceClient(key: Self.key)
        let admitted = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        await pipeline.serveDatagram(admitted)
        await client.close()
        #expect(backend.calls == ["off vm-a"])
        #expect(sizes.atRun.withLock { $0 } == [ReplayJournal.recordLength])
    }

    @Test("a packet seen and dropped (a copy of a request under way) is in the journal at once")
    func droppedCopyJournalled() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-pipeline")
        let replays = try ReplayJournal(directory: directory.url.path, logger: Logger(label: "pipeline-test"))
        let pipeline = pipeline(RecordingBackend(), replays: replays)
        // The guest's two addresses: two packets for one request.
        _ = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: 4000), source: "127.0.0.1", listener: "t", credentials: credentials))
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.2", port: 4000), source: "127.0.0.2", listener: "t", credentials: credentials) == nil)
        #expect(pipeline.statistics.snapshot.dropped[.duplicate] == 1)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: directory.path("seen-packets"))[.size] as? Int)
        #expect(size == 2 * ReplayJournal.recordLength, "both packets written, though neither was called back yet")
    }

    @Test("a stream request's packet is in the journal before its challenge is answered")
    func streamJournalledBeforeChallenge() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-pipeline")
        let journal = directory.path("seen-packets")
        let backend = RecordingBackend()
        let pipeline = pipeline(backend, streamRequestTimeout: .seconds(30), replays: try ReplayJournal(directory: directory.url.path, logger: Logger(label: "pipeline-test")))
        let (port, served) = try await serveOneStream(pipeline)
        var request = try FenceRequest(operation: .off, hash: .sha256, domain: "vm-a", callback: nil, port: 0, seqno: 5)
        request.sign(key: Self.key, random: (0..<6).map { _ in .random(in: .min ... .max) })
        let client = try await connect(port)
        let (answered, sizeWhenAnswered) = try await client.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: request.bytes))
            try await outbound.write(ByteBuffer(bytes: [UInt8](repeating: 7, count: 64)))   // the client's challenge
            var received: [UInt8] = []
            var chunks = inbound.makeAsyncIterator()
            while received.count < 128, let chunk = try await chunks.next() { received += chunk.readableBytesView }
            // Answered; the client leaves without answering the daemon's challenge.
            return (received.count, (try? FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int) ?? -1)
        }
        try await withTimeout(.seconds(5), "the stream is dropped") { try await served.value }
        #expect(answered == 128, "the answer and the daemon's own challenge")
        #expect(sizeWhenAnswered == ReplayJournal.recordLength)
        #expect(backend.calls.isEmpty, "never authenticated: nothing ran")
    }

    @Test("the copy whose address matches its UDP source is called back first")
    func sourceMatchPreferred() async throws {
        let decoy = try await FakeFenceClient(address: "127.0.0.2", key: Self.key)
        let client = try await FakeFenceClient(address: "127.0.0.1", key: Self.key)
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        // The first copy names 127.0.0.2 but came from 127.0.0.1; the second names 127.0.0.1.
        let first = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.2", port: decoy.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        await pipeline.serveDatagram(first)
        await decoy.close()
        await client.close()
        #expect(decoy.callbacks == 0)
        #expect(client.callbacks == 1)
        #expect(client.received == [[0]])
    }

    @Test("a call-back that fails authentication executes nothing and the next address is tried")
    func authenticationFailureTriesNext() async throws {
        let impostor = try await FakeFenceClient(address: "127.0.0.2", key: Self.key, behaviour: .wrongResponse)
        let client = try await FakeFenceClient(address: "127.0.0.1", key: Self.key)
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        let first = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.2", port: impostor.port), source: "127.0.0.2", listener: "t", credentials: credentials))
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.9", listener: "t", credentials: credentials) == nil)
        await pipeline.serveDatagram(first)
        await impostor.close()
        await client.close()
        #expect(impostor.callbacks == 1)
        #expect(impostor.received == [[]], "the impostor got no answer")
        #expect(client.received == [[0]])
        #expect(backend.calls == ["off vm-a"], "executed once, for the authenticated client")
        #expect(pipeline.statistics.snapshot.dropped[.authenticationFailed] == 1)
    }

    @Test("a request whose deadline passes before it could run is never executed, nor answered")
    func expiredNeverExecuted() async throws {
        let slow = try await FakeFenceClient(key: Self.key, behaviour: .slowChallenge(.milliseconds(600)))
        let backend = RecordingBackend()
        let pipeline = pipeline(backend, timeout: .milliseconds(300))
        let admitted = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: slow.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        await pipeline.serveDatagram(admitted)
        await slow.close()
        #expect(backend.calls.isEmpty)
        #expect(slow.received.allSatisfy { $0.isEmpty })
    }

    @Test("work that runs out of time at the deadline still gets its failure answered")
    func failureAnsweredAtDeadline() async throws {
        let client = try await FakeFenceClient(key: Self.key)
        let backend = RecordingBackend(hangsUntilDeadline: true)
        // Long enough for the call-back and the challenges to finish on a loaded machine, so the
        // backend is reached before the deadline and then runs out of time in it.
        let pipeline = pipeline(backend, timeout: .seconds(3))
        let admitted = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: client.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        await pipeline.serveDatagram(admitted)
        await client.close()
        #expect(backend.calls == ["off vm-a"])
        #expect(client.received == [[ResponseCode.failure.rawValue]])
    }

    @Test("a retransmission after the deadline is dropped as expired, never executed later")
    func lateRetransmission() async throws {
        let backend = RecordingBackend()
        let pipeline = pipeline(backend, timeout: .milliseconds(200))
        // Nobody listens on the call-back port: the call-back fails and the request may be retried...
        let unreachable = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: 9), source: "127.0.0.1", listener: "t", credentials: credentials))
        await pipeline.serveDatagram(unreachable)
        try await Task.sleep(for: .milliseconds(300))
        // ...but only within its deadline: a client that now listens on that port gets nothing.
        let late = try await FakeFenceClient(key: Self.key)
        #expect(pipeline.admit(datagram: try datagram(to: "127.0.0.1", port: 9), source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        await late.close()
        #expect(late.callbacks == 0)
        #expect(backend.calls.isEmpty)
        #expect(pipeline.statistics.snapshot.dropped[.expired] == 1)
        #expect(pipeline.statistics.snapshot.dropped[.callbackFailed] == 1)
    }

    @Test("requests for different domains are served concurrently")
    func concurrency() async throws {
        // The backend lets the requests go only once all five are in it at once; the deadline is
        // far, so that a loaded machine's slow call-backs do not end them first.
        let backend = RecordingBackend(meeting: 5)
        let pipeline = pipeline(backend, timeout: .seconds(30))
        var clients: [FakeFenceClient] = []
        var admitted: [AdmittedRequest] = []
        for index in 0..<5 {
            let client = try await FakeFenceClient(key: Self.key)
            clients.append(client)
            admitted.append(try #require(pipeline.admit(
                datagram: datagram(domain: "vm-\(index)", to: "127.0.0.1", port: client.port, seqno: UInt32(index)),
                source: "127.0.0.1", listener: "t", credentials: credentials
            )))
        }
        await withTaskGroup(of: Void.self) { group in
            for request in admitted { group.addTask { await pipeline.serveDatagram(request) } }
        }
        for client in clients { await client.close() }
        #expect(backend.maximumConcurrency == 5)
        #expect(clients.allSatisfy { $0.received == [[0]] })
    }

    @Test("malformed datagrams are dropped and counted by reason", arguments: [
        ("wrong-length", 175), ("wrong-length", 177), ("bad-family", 0), ("unusable-address", 1), ("digest-mismatch", 2),
    ])
    func malformed(reason: String, variant: Int) throws {
        let pipeline = pipeline(RecordingBackend())
        var bytes: [UInt8]
        switch variant {
        case 175, 177:
            bytes = [UInt8](repeating: 0, count: variant)
        case 0:
            var request = try FenceRequest(operation: .off, hash: .sha256, domain: "vm", callback: nil, port: 1229, seqno: 1)
            request.sign(key: Self.key, random: [0, 0, 0, 0, 0, 0])
            bytes = request.bytes
        case 1:
            var request = try FenceRequest(operation: .off, hash: .sha256, domain: "vm", callback: CallbackAddress("225.0.0.12"), port: 1229, seqno: 1)
            request.sign(key: Self.key, random: [0, 0, 0, 0, 0, 0])
            bytes = request.bytes
        default:
            bytes = try datagram(to: "127.0.0.1", port: 1229)
            bytes[4] ^= 1   // a letter of the domain
        }
        #expect(pipeline.admit(datagram: bytes, source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        #expect(pipeline.statistics.snapshot.dropped[DropReason(rawValue: reason)!] == 1)
    }

    /// A tcp listener for one connection, served by `pipeline`; the task ends when it is served.
    private func serveOneStream(_ pipeline: RequestPipeline) async throws -> (port: Int, served: Task<Void, any Error>) {
        let credentials = self.credentials
        let server = try await ServerBootstrap(group: TestLoops.clients)
            .bind(host: "127.0.0.1", port: 0) { child in
                child.eventLoop.makeCompletedFuture {
                    try StreamSession.prepare(child, credentials: credentials)
                    return child
                }
            }
        let port = try #require(server.channel.localAddress?.port)
        let served = Task {
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    await pipeline.serveStream(connection, listener: "tcp")
                    return
                }
            }
        }
        return (port, served)
    }

    private func connect(_ port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: TestLoops.clients).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
    }

    @Test("a stream client that sends too little is dropped after its one second")
    func incompleteStream() async throws {
        let pipeline = pipeline(RecordingBackend())
        let (port, served) = try await serveOneStream(pipeline)
        let client = try await connect(port)
        try await client.channel.writeAndFlush(ByteBuffer(bytes: [UInt8](repeating: 1, count: 100)))
        try await withTimeout(.seconds(5), "the stream is dropped") { try await served.value }
        try? await client.channel.close()
        #expect(pipeline.statistics.snapshot.dropped[.incompleteRequest] == 1)
    }

    @Test("a captured multicast packet sent on a stream gets no answer to any challenge; its multicast copy is still served")
    func multicastPacketOnStream() async throws {
        let backend = RecordingBackend()
        let pipeline = pipeline(backend, streamRequestTimeout: .seconds(30))
        let (port, served) = try await serveOneStream(pipeline)
        let packet = try datagram(to: "127.0.0.1", port: 1229)
        let client = try await connect(port)
        let received = try await client.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: packet))
            try await outbound.write(ByteBuffer(bytes: [UInt8](repeating: 7, count: 64)))   // a challenge
            var received: [UInt8] = []
            for try await chunk in inbound { received += chunk.readableBytesView }
            return received
        }
        try await withTimeout(.seconds(5), "the stream is dropped") { try await served.value }
        #expect(received.isEmpty, "no answer to the challenge, no result")
        #expect(pipeline.statistics.snapshot.dropped[.notAStreamRequest] == 1)
        #expect(backend.calls.isEmpty)
        // Not journalled there: a copy raced onto the stream does not make the guest's own a replay.
        #expect(pipeline.admit(datagram: packet, source: "127.0.0.1", listener: "t", credentials: credentials) != nil)
    }

    @Test("an exact repeat of an accepted packet is a replay: no call-back, during the request or after it")
    func replay() async throws {
        let client = try await FakeFenceClient(key: Self.key)
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        let packet = try datagram(to: "127.0.0.1", port: client.port)
        let first = try #require(pipeline.admit(datagram: packet, source: "127.0.0.1", listener: "t", credentials: credentials))
        #expect(pipeline.admit(datagram: packet, source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        await pipeline.serveDatagram(first)
        #expect(pipeline.admit(datagram: packet, source: "127.0.0.7", listener: "t", credentials: credentials) == nil)
        await client.close()
        #expect(client.callbacks == 1)
        #expect(backend.calls == ["off vm-a"])
        #expect(pipeline.statistics.snapshot.dropped[.replay] == 2)
    }

    @Test("a client challenge that a daemon issued is refused: no answer to it, nothing executed")
    func reflectedChallenge() async throws {
        let issued = ChallengeTag(key: Self.key).challenge(random: [UInt8](repeating: 9, count: ChallengeTag.randomLength))
        let reflector = try await FakeFenceClient(key: Self.key, behaviour: .challenge(issued))
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        let admitted = try #require(pipeline.admit(datagram: datagram(to: "127.0.0.1", port: reflector.port), source: "127.0.0.1", listener: "t", credentials: credentials))
        await pipeline.serveDatagram(admitted)
        await reflector.close()
        #expect(reflector.callbacks == 1)
        #expect(reflector.received == [[]], "no response to the reflected challenge, no result")
        #expect(backend.calls.isEmpty)
        #expect(pipeline.statistics.snapshot.dropped[.reflectedChallenge] == 1)
    }

    @Test("two requests naming one client endpoint: neither is called back")
    func conflictBeforeCallback() async throws {
        let client = try await FakeFenceClient(key: Self.key)
        let backend = RecordingBackend()
        let pipeline = pipeline(backend)
        let off = try #require(pipeline.admit(datagram: datagram(.off, to: "127.0.0.1", port: client.port, seqno: 1), source: "127.0.0.1", listener: "t", credentials: credentials))
        #expect(pipeline.admit(datagram: try datagram(.deviceStatus, domain: "", to: "127.0.0.1", port: client.port, seqno: 2), source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        await pipeline.serveDatagram(off)
        await client.close()
        #expect(client.callbacks == 0)
        #expect(backend.calls.isEmpty)
        #expect(pipeline.statistics.snapshot.dropped[.conflict] == 1)
    }

    @Test("a second request for an endpoint during a call-back: the first is not executed, the client gets no answer")
    func conflictDuringCallback() async throws {
        let (held, challenge) = AsyncStream<Void>.makeStream()
        let client = try await FakeFenceClient(key: Self.key, behaviour: .heldChallenge(held))
        let backend = RecordingBackend()
        let pipeline = pipeline(backend, timeout: .seconds(30))
        let off = try #require(pipeline.admit(datagram: datagram(.off, to: "127.0.0.1", port: client.port, seqno: 1), source: "127.0.0.1", listener: "t", credentials: credentials))
        let served = Task { await pipeline.serveDatagram(off) }
        try await waitUntil("the call-back", every: .milliseconds(2)) { client.callbacks > 0 }
        #expect(pipeline.admit(datagram: try datagram(.status, to: "127.0.0.1", port: client.port, seqno: 2), source: "127.0.0.1", listener: "t", credentials: credentials) == nil)
        // The client authenticates only now: the second request surely came during the call-back.
        challenge.yield()
        await served.value
        await client.close()
        #expect(backend.calls.isEmpty, "not executed")
        #expect(client.received == [[]], "and not answered")
        #expect(pipeline.statistics.snapshot.answered["off/conflict"] == 1)
    }
}
