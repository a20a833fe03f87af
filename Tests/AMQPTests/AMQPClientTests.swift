import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import TestSupport
@testable import AMQP

/// The AMQP 1.0 client against a real RabbitMQ (Debian's, with its AMQP 1.0 plugin) on loopback.
@Suite("AMQP client ⇄ RabbitMQ", .enabled(if: TestEnvironment.shouldRun(BrokerProcess.prerequisites), "needs rabbitmq-server"))
struct AMQPClientTests {
    let logger = Logger(label: "amqp-test")
    let profile = AddressProfile.rabbitMQ3
    var deadline: ContinuousClock.Instant { .now + .seconds(10) }

    /// Runs a connection to `broker` around `body`, once it is open.
    func connected<T: Sendable>(
        _ broker: BrokerProcess, backoff: ClosedRange<Duration> = .milliseconds(100)...(.seconds(1)),
        _ body: (AMQPConnection) async throws -> T
    ) async throws -> T {
        var configuration = try AMQPConfiguration(url: broker.url, containerID: "test-\(UUID().uuidString.prefix(8))")
        configuration.reconnectBackoff = backoff
        return try await running(configuration) { connection in
            try await connection.waitUntilConnected(deadline: deadline)
            return try await body(connection)
        }
    }

    /// Runs a connection with `configuration` around `body`, connected or not.
    func running<T: Sendable>(_ configuration: AMQPConfiguration, _ body: (AMQPConnection) async throws -> T) async throws -> T {
        let connection = try AMQPConnection(configuration: configuration, logger: logger)
        return try await connection.whileRunning { try await body(connection) }
    }

    func unique(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8))" }

    /// A RabbitMQ queue: what the client's sends, receives and time-to-live are tried on (the bus
    /// itself uses topics and direct addresses only).
    func queue(_ name: String) -> String { "/queue/\(name)" }

    /// A service's queue read on one connection to the shared broker, and a requester on another:
    /// `body(server, service, requests, requester)`.
    func requesting(_ body: (AMQPConnection, String, AMQPReceiver, AMQPRequester) async throws -> Void) async throws {
        let broker = try await BrokerProcess.shared()
        try await connected(broker) { server in
            try await connected(broker) { client in
                let service = queue(unique("service"))
                let requests = try await server.receiver(from: service, deadline: deadline)
                let requester = try await AMQPRequester(connection: client, replyAddress: profile.address(unique("reply")), deadline: deadline)
                try await body(server, service, requests, requester)
            }
        }
    }

    func next(_ receiver: AMQPReceiver, within limit: Duration = .seconds(10)) async throws -> AMQPMessage? {
        let messages = receiver.messages
        return try await withTimeout(limit, "a message on \(receiver.address)") {
            var iterator = messages.makeAsyncIterator()
            return await iterator.next()
        }
    }

    @Test("a queue round trip keeps every field")
    func queueRoundTrip() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let address = queue(unique("q"))
            let receiver = try await connection.receiver(from: address, deadline: deadline)
            let sent = AMQPMessage(
                body: Array("hello \u{1F512}".utf8), messageID: "m-1", correlationID: "c-1", subject: "greeting",
                replyTo: "/queue/elsewhere", contentType: "text/plain", timeToLive: .seconds(30),
                applicationProperties: ["fr-mac": "abc123", "x": "y"]
            )
            try await connection.send(sent, to: address, deadline: deadline)
            let received = try #require(try await next(receiver))
            #expect(received.body == sent.body)
            #expect(received.messageID == "m-1")
            #expect(received.correlationID == "c-1")
            #expect(received.subject == "greeting")
            #expect(received.replyTo == "/queue/elsewhere")
            #expect(received.contentType == "text/plain")
            #expect(received.applicationProperties == ["fr-mac": "abc123", "x": "y"])
        }
    }

    @Test("a topic fans out to every subscriber; a queue keeps messages sent before its consumer")
    func topicAndQueue() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let topic = profile.address(unique("t"))
            let first = try await connection.receiver(from: topic, deadline: deadline)
            let second = try await connection.receiver(from: topic, deadline: deadline)
            try await connection.send(AMQPMessage(body: [1, 2, 3]), to: topic, deadline: deadline)
            #expect(try await next(first)?.body == [1, 2, 3])
            #expect(try await next(second)?.body == [1, 2, 3])

            let queue = queue(unique("early"))
            try await connection.send(AMQPMessage(body: [9], durable: true), to: queue, deadline: deadline)
            let late = try await connection.receiver(from: queue, deadline: deadline)
            #expect(try await next(late)?.body == [9])
        }
    }

    @Test("an inline consumer gets every message in order, many times its capacity: credit comes back as it returns")
    func inlineConsumer() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let topic = profile.address(unique("inline"))
            let taken = Mutex<[[UInt8]]>([])
            _ = try await connection.receiver(from: topic, capacity: 16, settlement: .brokerSettles, consumer: .inline { message in
                taken.withLock { $0.append(message.body) }
            }, deadline: deadline)
            for index in 0..<300 {
                try await connection.send(AMQPMessage(body: [UInt8(index % 256), UInt8(index / 256)]), to: topic, deadline: deadline)
            }
            try await waitUntil("all 300 taken") { taken.withLock { $0.count } >= 300 }
            let expected: [[UInt8]] = (0..<300).map { (index: Int) -> [UInt8] in [UInt8(index % 256), UInt8(index / 256)] }
            #expect(taken.withLock { $0 } == expected)
        }
    }

    @Test("a subscription the broker settles: RabbitMQ agrees, and every message arrives")
    func brokerSettles() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let topic = profile.address(unique("settled"))
            let settled = try await connection.receiver(from: topic, capacity: 16, settlement: .brokerSettles, deadline: deadline)
            let accepting = try await connection.receiver(from: topic, deadline: deadline)
            #expect(settled.settledByBroker)
            #expect(!accepting.settledByBroker)
            for index in 0..<300 {
                try await connection.send(AMQPMessage(body: [UInt8(index % 256), UInt8(index / 256)]), to: topic, deadline: deadline)
            }
            // Once the other subscriber has had all of them, the settled one holds no more than its
            // credit allowed: the broker keeps the rest.
            for index in 0..<300 {
                #expect(try await next(accepting)?.body == [UInt8(index % 256), UInt8(index / 256)])
            }
            try await waitUntil("the settled subscription's credit used up") { settled.buffered == 16 }
            #expect(settled.buffered == 16)
            // Credit comes back as they are consumed: every message arrives, in order.
            for index in 0..<300 {
                #expect(try await next(settled)?.body == [UInt8(index % 256), UInt8(index / 256)])
            }
        }
    }

    @Test("request and reply through a reply address of the bus's kind (a topic on RabbitMQ 3)")
    func requestReply() async throws {
        try await requesting { server, service, requests, requester in
            let replies = try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
                group.addTask {
                    for await request in requests.messages {
                        guard let replyTo = request.replyTo else { continue }
                        let reply = AMQPMessage(body: request.body.reversed(), correlationID: request.correlationID)
                        try? await server.send(reply, to: replyTo, deadline: .now + .seconds(5))
                    }
                    return nil
                }
                var replies = Set<[UInt8]>()
                try await withThrowingTaskGroup(of: [UInt8].self) { requests in
                    for index in 0..<10 {
                        requests.addTask { try await requester.request(AMQPMessage(body: [UInt8(index), 0]), to: service, deadline: .now + .seconds(10)).body }
                    }
                    for try await reply in requests { replies.insert(reply) }
                }
                group.cancelAll()
                return replies
            }
            #expect(replies == Set((0..<10).map { [0, UInt8($0)] }))
        }
    }

    @Test("a reply the request does not accept (a forgery under its correlation id) leaves it waiting: the one it accepts answers; with none, the deadline")
    func refusedReply() async throws {
        try await requesting { server, service, requests, requester in
            let offered = Mutex<[[UInt8]]>([])
            let accept: @Sendable (AMQPMessage) -> UInt8? = { reply in
                offered.withLock { $0.append(reply.body) }
                return reply.body.first == 42 ? reply.body.last : nil
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // The first request gets a forgery, then its answer; the second only a forgery.
                    for await request in requests.messages {
                        guard let replyTo = request.replyTo else { continue }
                        try? await server.send(AMQPMessage(body: [66, 6], correlationID: request.correlationID), to: replyTo, deadline: .now + .seconds(5))
                        if request.body == [1] {
                            try? await server.send(AMQPMessage(body: [42, 7], correlationID: request.correlationID), to: replyTo, deadline: .now + .seconds(5))
                        }
                    }
                }
                let answer = try await requester.request(to: service, deadline: .now + .seconds(10), accepting: accept) { (_: Int) throws(AMQPError) in AMQPMessage(body: [1]) }
                #expect(answer == 7)
                #expect(offered.withLock { $0 } == [[66, 6], [42, 7]], "the forgery came first and was refused")
                let second = Task { () async throws(AMQPError) -> UInt8 in
                    try await requester.request(to: service, deadline: .now + .seconds(5), accepting: accept) { (_: Int) throws(AMQPError) in AMQPMessage(body: [2]) }
                }
                try await waitUntil("the second request's forgery offered to it") { offered.withLock { $0.count } == 3 }
                let result = await second.result
                let error = #expect(throws: AMQPError.self, "a request answered only by a forgery fails") { try result.get() }
                #expect(error?.code == .timedOut)
                group.cancelAll()
            }
        }
    }

    @Test("a request nobody answers fails at its deadline")
    func unansweredRequest() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let requester = try await AMQPRequester(connection: connection, replyAddress: profile.address(unique("reply")), deadline: deadline)
            let started = ContinuousClock.now
            do throws(AMQPError) {
                _ = try await requester.request(AMQPMessage(body: [1]), to: queue(unique("nobody")), deadline: .now + .milliseconds(500))
                Issue.record("a request nobody answers succeeded")
            } catch {
                #expect(error.code == .timedOut)
            }
            #expect(ContinuousClock.now - started < .seconds(5), "the deadline bounds the wait")
        }
    }

    @Test("a request sent again on a signal: the first copy lost, the reply to the second answers; each copy has its own correlation id")
    func resentRequest() async throws {
        try await requesting { server, service, requests, requester in
            let (signals, signal) = AsyncStream.makeStream(of: Void.self)
            let copies = Mutex<[Int]>([])
            let (reply, ids) = try await withThrowingTaskGroup(of: [String]?.self) { group in
                group.addTask {
                    var ids: [String] = []
                    for await request in requests.messages {
                        ids.append(request.correlationID ?? "")
                        // The first copy is "lost": not answered, and the requester told to send again.
                        guard ids.count == 2, let replyTo = request.replyTo else {
                            signal.yield()
                            continue
                        }
                        try? await server.send(AMQPMessage(body: [42], correlationID: request.correlationID), to: replyTo, deadline: .now + .seconds(5))
                        return ids
                    }
                    return nil
                }
                let reply = try await requester.request(to: service, deadline: .now + .seconds(10), resendingOn: signals, accepting: { $0 }) { (number: Int) throws(AMQPError) in
                    copies.withLock { $0.append(number) }
                    return AMQPMessage(body: [7, UInt8(number)])
                }
                var ids: [String]?
                while ids == nil, let result = try await group.next() { ids = result }
                group.cancelAll()
                return (reply.body, ids ?? [])
            }
            #expect(reply == [42])
            #expect(copies.withLock { $0 } == [0, 1], "the first copy, then one more on the signal")
            #expect(ids.count == 2 && ids[0] != ids[1], "each copy is matched by its own id")
        }
    }

    @Test("a request whose task is cancelled stops waiting at once")
    func cancelledRequest() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let service = queue(unique("silent"))
            let requests = try await connection.receiver(from: service, deadline: deadline)
            let requester = try await AMQPRequester(connection: connection, replyAddress: profile.address(unique("reply")), deadline: deadline)
            let waiting = Task { () async throws(AMQPError) -> AMQPMessage in
                try await requester.request(AMQPMessage(body: [1]), to: service, deadline: .now + .seconds(60))
            }
            // The request is out: its task now waits for the reply.
            _ = try #require(try await next(requests))
            let cancelled = ContinuousClock.now
            waiting.cancel()
            let result = await waiting.result
            #expect(ContinuousClock.now - cancelled < .seconds(5), "cancellation ends the wait, not the 60 s deadline")
            let error = #expect(throws: AMQPError.self) { try result.get() }
            #expect(error?.code == .cancelled)
        }
    }

    @Test("the time to live is honoured by the broker")
    func timeToLive() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let queue = queue(unique("ttl"))
            try await connection.send(AMQPMessage(body: [1], timeToLive: .milliseconds(200)), to: queue, deadline: deadline)
            try await connection.send(AMQPMessage(body: [2], timeToLive: .seconds(60)), to: queue, deadline: deadline)
            try await Task.sleep(for: .seconds(1))
            let receiver = try await connection.receiver(from: queue, deadline: deadline)
            #expect(try await next(receiver)?.body == [2], "the expired message is gone, the other arrives")
        }
    }

    @Test("an attach the broker refuses fails within its deadline instead of hanging")
    func refusedAttach() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let started = ContinuousClock.now
            await #expect(throws: AMQPError.self) {
                _ = try await connection.receiver(from: "/no-such-kind/of-address", deadline: .now + .seconds(2))
            }
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test("a wrong password never connects, and sends fail at their deadline")
    func wrongPassword() async throws {
        let broker = try await BrokerProcess.shared()
        var configuration = try AMQPConfiguration(url: "amqp://fence:wrong@127.0.0.1:\(broker.port)", containerID: "wrong")
        configuration.reconnectBackoff = .milliseconds(100)...(.milliseconds(500))
        try await running(configuration) { connection in
            await #expect(throws: AMQPError.self) { try await connection.waitUntilConnected(deadline: .now + .seconds(2)) }
            do throws(AMQPError) {
                try await connection.send(AMQPMessage(body: [1]), to: queue("x"), deadline: .now + .milliseconds(300))
                Issue.record("a send without a connection succeeded")
            } catch {
                #expect(error.code == .timedOut)
            }
        }
    }

    @Test("the broker stopped and started again: sends fail meanwhile, then the connection and its subscriptions come back")
    func reconnects() async throws {
        try await BrokerProcess.withDedicated { broker in try await reconnects(broker) }
    }

    func reconnects(_ broker: BrokerProcess) async throws {
        try await connected(broker, backoff: .milliseconds(100)...(.milliseconds(500))) { connection in
            let queue = queue(unique("survivor"))
            let receiver = try await connection.receiver(from: queue, deadline: deadline)
            try await connection.send(AMQPMessage(body: [1]), to: queue, deadline: deadline)
            #expect(try await next(receiver)?.body == [1])
            // An inline consumer too: its function stays with the subscription across reconnects.
            let topic = profile.address(unique("inline-survivor"))
            let taken = Mutex<[[UInt8]]>([])
            _ = try await connection.receiver(from: topic, settlement: .brokerSettles, consumer: .inline { message in
                taken.withLock { $0.append(message.body) }
            }, deadline: deadline)
            try await connection.send(AMQPMessage(body: [1]), to: topic, deadline: deadline)
            try await waitUntil("the inline consumer took the first message") { taken.withLock { $0 } == [[1]] }

            try await broker.stop()
            do throws(AMQPError) {
                try await connection.send(AMQPMessage(body: [2]), to: queue, deadline: .now + .seconds(1))
                Issue.record("a send succeeded while the broker was down")
            } catch {
                #expect(error.code == .timedOut || error.code == .disconnected, "\(error)")
            }
            #expect(!connection.isConnected)

            try await broker.restart()
            try await connection.waitUntilConnected(deadline: .now + .seconds(30))
            var generations: [UInt64] = []
            for await event in connection.events {
                if case .connected(let generation) = event { generations.append(generation) }
                if generations.count == 2 { break }
            }
            #expect(generations == [1, 2])
            try await connection.send(AMQPMessage(body: [3]), to: queue, deadline: deadline)
            #expect(try await next(receiver, within: .seconds(20))?.body == [3], "the subscription was attached again")
            // Sent until one arrives: a topic keeps nothing for a subscription not attached yet.
            for attempt in 2..<40 where taken.withLock({ $0.count }) == 1 {
                try await connection.send(AMQPMessage(body: [UInt8(attempt)]), to: topic, deadline: deadline)
                try? await waitUntil("a message after the reconnect", within: .milliseconds(500)) { taken.withLock { $0.count } > 1 }
            }
            #expect(taken.withLock { $0.count } > 1, "the inline subscription was attached again, its function with it")
        }
    }

    @Test("a slow consumer holds at most its capacity; the broker keeps the rest until it is consumed, in order")
    func backpressure() async throws {
        try await connected(try await BrokerProcess.shared()) { connection in
            let address = queue(unique("slow"))
            let receiver = try await connection.receiver(from: address, capacity: 10, deadline: deadline)
            for index in 0..<200 { try await connection.send(AMQPMessage(body: [UInt8(index)]), to: address, deadline: deadline) }
            try await waitUntil("the receiver filled its capacity") { receiver.buffered == 10 }
            // A broker that overran the credit would show here, as more than ten held.
            try await Task.sleep(for: .milliseconds(300))
            #expect(receiver.buffered == 10)
            // Bounded: a credit that never came back would stall the link, and fail here.
            let messages = receiver.messages
            let received = try await withTimeout(.seconds(60), "all 200 messages") {
                var received: [UInt8] = []
                var iterator = messages.makeAsyncIterator()
                while received.count < 200, let message = await iterator.next() { received.append(message.body[0]) }
                return received
            }
            #expect(received == (0..<200).map { UInt8($0) })
            #expect(receiver.buffered == 0)
        }
    }

    @Test("a message above the size limit is refused before it is buffered and counted; the subscription goes on")
    func sizeLimit() async throws {
        let counted = CountedMetrics.shared, oversized = "fence_bus_oversized_messages_total"
        let countedBefore = counted.count(oversized)
        let broker = try await BrokerProcess.shared()
        var configuration = try AMQPConfiguration(url: broker.url, containerID: "test-\(UUID().uuidString.prefix(8))")
        configuration.maximumMessageSize = 4096
        try await running(configuration) { small in
            try await connected(broker) { sender in
                try await small.waitUntilConnected(deadline: deadline)
                let address = profile.address(unique("sized"))
                // A capacity of two: each refused message must give its credit back, or the link stalls.
                let receiver = try await small.receiver(from: address, capacity: 2, deadline: deadline)
                // One small enough for one frame, two that come in several (partial deliveries).
                for size in [20_000, 300_000, 300_000] {
                    try await sender.send(AMQPMessage(body: [UInt8](repeating: 1, count: size)), to: address, deadline: deadline)
                }
                try await sender.send(AMQPMessage(body: [2]), to: address, deadline: deadline)
                try await sender.send(AMQPMessage(body: [3]), to: address, deadline: deadline)
                #expect(try await next(receiver)?.body == [2], "the large ones were refused, the next one arrives")
                #expect(try await next(receiver)?.body == [3])
                #expect(counted.count(oversized) == countedBefore + 3, "each refusal counted")
            }
        }
    }

    @Test("several nodes: a dead one is passed over; when the node in use stops, the connection and its subscriptions move to the next")
    func failover() async throws {
        let shared = try await BrokerProcess.shared()
        try await BrokerProcess.withDedicated { dedicated in
            // One account on every node, as in a cluster.
            try await dedicated.ctl("change_password", "fence", shared.password)
            let nobody = try Ports.freeTCP()
            var configuration = try AMQPConfiguration(
                urls: ["amqp://fence:\(shared.password)@127.0.0.1:\(nobody)", "amqp://127.0.0.1:\(dedicated.port)", "amqp://127.0.0.1:\(shared.port)"],
                containerID: "test-\(UUID().uuidString.prefix(8))"
            )
            configuration.reconnectBackoff = .milliseconds(100)...(.milliseconds(500))
            try await running(configuration) { connection in
                try await connection.waitUntilConnected(deadline: deadline)
                #expect(connection.connectedBroker?.port == dedicated.port, "the node nobody listens on was passed over")
                let topic = profile.address(unique("moving"))
                let receiver = try await connection.receiver(from: topic, deadline: deadline)
                try await connection.send(AMQPMessage(body: [1]), to: topic, deadline: deadline)
                #expect(try await next(receiver)?.body == [1])

                try await dedicated.stop()
                try await waitUntil("the connection moved to the shared broker", within: .seconds(30)) {
                    connection.connectedBroker?.port == shared.port
                }
                // Sent until one arrives: the re-attach of the subscription may still be under way.
                var arrived: [UInt8]?
                for attempt in 2..<40 where arrived == nil {
                    try await connection.send(AMQPMessage(body: [UInt8(attempt)]), to: topic, deadline: deadline)
                    arrived = try? await next(receiver, within: .milliseconds(500))?.body
                }
                #expect(arrived != nil, "the subscription was attached again on the next node")
            }
        }
    }

    @Test("a node that takes the connection and never answers is given up at the attempt's deadline; the next node serves")
    func silentNode() async throws {
        let shared = try await BrokerProcess.shared()
        let silent = try SilentListener()
        var configuration = try AMQPConfiguration(
            urls: ["amqp://fence:\(shared.password)@127.0.0.1:\(silent.port)", "amqp://127.0.0.1:\(shared.port)"],
            containerID: "test-\(UUID().uuidString.prefix(8))"
        )
        // Without the attempt's deadline only this would end the wait, long after the test's bound.
        configuration.idleTimeout = .seconds(600)
        configuration.connectTimeout = .milliseconds(500)
        try await running(configuration) { connection in
            try await connection.waitUntilConnected(deadline: .now + .seconds(30))
            #expect(connection.connectedBroker?.port == shared.port)
        }
    }

    @Test("a subscription refused after a reconnect: RabbitMQ closes the connection each time; the client backs off instead of a storm, and the subscription comes back once allowed")
    func refusedAfterReconnect() async throws {
        try await BrokerProcess.withDedicated { broker in
            // A user of its own, whose read permission the test takes away and gives back.
            let user = unique("reader"), password = UUID().uuidString
            try await broker.ctl("add_user", user, password)
            try await broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
            let configuration = try AMQPConfiguration(url: "amqp://\(user):\(password)@127.0.0.1:\(broker.port)", containerID: unique("refused"))
            try await running(configuration) { connection in
                // Every opening, from the connection's own events (an opening the broker closes at
                // once is too short to be seen by polling).
                let openings = Openings()
                let count = { openings.times.withLock { $0.count } }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await event in connection.events {
                            if case .connected = event { openings.times.withLock { $0.append(.now) } }
                        }
                    }
                    defer { group.cancelAll() }
                    try await waitUntil("connected") { count() == 1 }
                    let name = unique("guarded")
                    let receiver = try await connection.receiver(from: queue(name), deadline: deadline)
                    try await connection.send(AMQPMessage(body: [1], durable: true), to: queue(name), deadline: deadline)
                    #expect(try await next(receiver)?.body == [1])

                    // Reading taken away, then the broker restarted: every connection opens, and
                    // is closed by the broker as the subscription is refused on it.
                    try await broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", "^$")
                    try await broker.stop()
                    try await broker.restart()
                    try await waitUntil("connected again", within: .seconds(30)) { count() >= 2 }
                    try await waitUntil("five more connections", within: .seconds(60)) { count() >= 7 }
                    // Backing off (100 ms, doubling, each step at least half): five reconnects take
                    // 1.55 s at the least. Starting the backoff again at each opening took 0.3 s.
                    let times = openings.times.withLock { $0 }
                    #expect(times[6] - times[1] >= .milliseconds(1500), "reconnects without backing off: \(times)")

                    // Allowed again: the subscription comes back with a later connection. A send
                    // may land on a connection the broker is closing: sent until one arrives.
                    try await broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
                    var arrived: [UInt8]?
                    for attempt in 2..<60 where arrived == nil {
                        try? await connection.send(AMQPMessage(body: [UInt8(attempt)], durable: true), to: queue(name), deadline: .now + .seconds(2))
                        arrived = try? await next(receiver, within: .seconds(1))?.body
                    }
                    #expect(arrived != nil, "the subscription was attached again")
                }
            }
        }
    }

    @Test("the connection lives as long as its run(): a graceful shutdown closes it, subscriptions end, later work is refused at once")
    func serviceLifetime() async throws {
        let broker = try await BrokerProcess.shared()
        let connection = try AMQPConnection(configuration: try AMQPConfiguration(url: broker.url, containerID: "test-\(UUID().uuidString.prefix(8))"), logger: logger)
        let probe = Probe { [deadline] in
            try await connection.waitUntilConnected(deadline: deadline)
            return try await connection.receiver(from: AddressProfile.rabbitMQ3.address("lifetime"), deadline: deadline)
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: connection), .init(service: probe, successTerminationBehavior: .gracefullyShutdownGroup)],
            logger: logger
        ))
        try await withTimeout(.seconds(30), "the group to stop") { try await group.run() }
        let receiver = try #require(probe.result.withLock { $0 })
        #expect(!connection.isConnected)
        var iterator = receiver.messages.makeAsyncIterator()
        #expect(await iterator.next() == nil, "the subscription ended with the connection")
        let started = ContinuousClock.now
        do {
            try await connection.send(AMQPMessage(body: [1]), to: queue("after"), deadline: .now + .seconds(10))
            Issue.record("a send after the close succeeded")
        } catch {
            #expect(error.code == .closed)
        }
        #expect(ContinuousClock.now - started < .seconds(5), "refused at once, not at the deadline")
        await #expect(throws: AMQPError.self, "one run per connection") { try await connection.run() }
    }
}

@Suite("AMQP configuration")
struct AMQPConfigurationTests {
    @Test("URLs", arguments: [
        ("amqp://127.0.0.1", "127.0.0.1", 5672, nil as String?, nil as String?),
        ("amqp://u:p@broker.example:5673", "broker.example", 5673, "u", "p"),
        ("amqp://user@[::1]:5680/vhost", "::1", 5680, "user", nil),
    ])
    func urls(url: String, host: String, port: Int, user: String?, password: String?) throws {
        let configuration = try AMQPConfiguration(url: url, containerID: "c")
        #expect(configuration.brokers == [AMQPConfiguration.Broker(host: host, port: port)])
        #expect(configuration.user == user)
        #expect(configuration.password == password)
        #expect(configuration.tls == nil)
    }

    @Test("bad URLs and insecure PLAIN are refused before connecting")
    func refusals() throws {
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "http://x", containerID: "c") }
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqp://x:99999", containerID: "c") }
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqps://x", containerID: "c") }
        let tls = AMQPConfiguration.TLS(caFile: "/ca.pem")
        #expect(try AMQPConfiguration(url: "amqps://x", tls: tls, containerID: "c").brokers.first?.port == 5671)
        let remote = try AMQPConfiguration(url: "amqp://u:p@192.0.2.7", containerID: "c")
        #expect(throws: AMQPError.self) { try AMQPConnection(configuration: remote, logger: Logger(label: "t")) }
        // One remote node among loopback ones is enough to refuse a clear-text password.
        let mixed = try AMQPConfiguration(urls: ["amqp://u:p@127.0.0.1", "amqp://192.0.2.7"], containerID: "c")
        #expect(throws: AMQPError.self) { try mixed.validate() }
    }

    @Test("loopback is an address literal of 127/8 or ::1, or localhost; a DNS name that looks like one is remote", arguments: [
        ("127.0.0.1", true), ("127.3.4.5", true), ("::1", true), ("localhost", true), ("LocalHost", true),
        ("127.example.net", false), ("127.0.0.1.example.net", false), ("128.0.0.1", false), ("::2", false), ("::ffff:127.0.0.1", false), ("broker", false),
    ])
    func loopback(host: String, loopback: Bool) throws {
        #expect(AMQPConfiguration.Broker(host: host, port: 5672).isLoopback == loopback)
        let plain = try AMQPConfiguration(urls: ["amqp://u:p@\(host.contains(":") ? "[\(host)]" : host)"], containerID: "c")
        if loopback {
            #expect(throws: Never.self) { try plain.validate() }
        } else {
            #expect(throws: AMQPError.self, "PLAIN in clear text to \(host)") { try plain.validate() }
        }
    }

    @Test("the nodes of a cluster: tried in order, one scheme, one account")
    func cluster() throws {
        let tls = AMQPConfiguration.TLS(caFile: "/ca.pem")
        let three = try AMQPConfiguration(urls: ["amqps://u:p@a.example", "amqps://b.example:5680", "amqps://[fd00::3]"], tls: tls, containerID: "c")
        #expect(three.brokers.map(\.description) == ["a.example:5671", "b.example:5680", "[fd00::3]:5671"])
        #expect(three.user == "u" && three.password == "p")
        #expect(three.tls == tls)
        #expect(throws: AMQPError.self) { try AMQPConfiguration(urls: ["amqps://a", "amqp://b"], tls: tls, containerID: "c") }
        #expect(throws: AMQPError.self) { try AMQPConfiguration(urls: ["amqp://u:p@a", "amqp://v:p@b"], containerID: "c") }
        #expect(throws: AMQPError.self) { try AMQPConfiguration(urls: [], containerID: "c") }
        #expect(try AMQPConfiguration(urls: ["amqp://u:p@a", "amqp://u:p@b"], containerID: "c").brokers.count == 2)
    }

    @Test("the address profile")
    func profiles() {
        #expect(AddressProfile.rabbitMQ3.address("fence.commands.h1") == "/topic/fence.commands.h1")
    }
}

/// When each opening of a connection was announced.
private final class Openings: Sendable {
    let times = Mutex<[ContinuousClock.Instant]>([])
}

/// A service for the lifetime test: does its work once, keeps the result, and returns.
private final class Probe: Service, Sendable {
    let work: @Sendable () async throws -> AMQPReceiver
    let result = Mutex<AMQPReceiver?>(nil)

    init(_ work: @escaping @Sendable () async throws -> AMQPReceiver) {
        self.work = work
    }

    func run() async throws {
        let receiver = try await work()
        result.withLock { $0 = receiver }
    }
}

/// A TCP port that takes connections (the kernel completes the handshake) and never answers:
/// a broker node hung, or a machine gone behind a proxy.
private final class SilentListener: Sendable {
    let port: Int
    private let descriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                descriptor >= 0 && bind(descriptor, address, length) == 0 && listen(descriptor, 8) == 0 && getsockname(descriptor, address, &length) == 0
            }
        }
        guard listening else {
            if descriptor >= 0 { close(descriptor) }
            throw AMQPError(.invalidConfiguration, "cannot listen on 127.0.0.1 for the silent node: errno \(errno)")
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}
