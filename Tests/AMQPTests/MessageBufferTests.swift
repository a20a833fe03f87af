import Synchronization
import Testing
@testable import AMQP

/// The credit bookkeeping between the proactor thread and a subscription's consumer, without a broker.
@Suite("Backpressure of a subscription")
struct MessageBufferTests {
    final class Grants: Sendable {
        let given = Mutex<[MessageBuffer.Grant]>([])
        var all: [Int] { given.withLock { $0.map(\.credit) } }
        var epochs: [UInt64] { given.withLock { $0.map(\.epoch) } }
    }

    func message(_ byte: UInt8) -> AMQPMessage { AMQPMessage(body: [byte]) }

    @Test("credit comes back as messages are consumed, half the capacity at a time, never as they arrive")
    func grants() async {
        let grants = Grants()
        let buffer = MessageBuffer(capacity: 4) { grant in grants.given.withLock { $0.append(grant) } }
        #expect(buffer.creditForNewLink().credit == 4)
        for byte: UInt8 in 1...4 { buffer.deliver(message(byte)) }
        #expect(buffer.count == 4)
        #expect(grants.all.isEmpty, "arrivals grant nothing")
        var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
        #expect(await iterator.next()?.body == [1])
        #expect(grants.all.isEmpty)
        #expect(await iterator.next()?.body == [2])
        #expect(grants.all == [2])
        // A new link (after a reconnect) starts with what the two waiting messages leave; what
        // is consumed from then on is granted on that link only.
        let newLink = buffer.creditForNewLink()
        #expect(newLink.credit == 2)
        #expect(await iterator.next()?.body == [3])
        #expect(await iterator.next()?.body == [4])
        #expect(grants.all == [2, 2])
        #expect(grants.epochs == [1, newLink.epoch])
        #expect(buffer.isCurrent(newLink.epoch) && !buffer.isCurrent(1))
    }

    @Test("credit counted for a link that is gone is void: a consumer that empties its buffer during a reconnect never gets more than its capacity")
    func grantAcrossReconnect() async {
        let grants = Grants()
        let buffer = MessageBuffer(capacity: 4) { grant in grants.given.withLock { $0.append(grant) } }
        let first = buffer.creditForNewLink()
        for byte: UInt8 in 1...4 { buffer.deliver(message(byte)) }
        var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
        for _ in 1...4 { _ = await iterator.next() }
        // The two grants of the old link are still on their way when the new link is attached.
        #expect(grants.epochs == [first.epoch, first.epoch])
        let second = buffer.creditForNewLink()
        #expect(second.credit == 4, "the new link alone holds the whole capacity")
        #expect(!buffer.isCurrent(first.epoch), "so the old grants are dropped, not added on top")
    }

    @Test("a waiting consumer gets a message at once; the end of the subscription ends the sequence after what is left")
    func waitingAndEnd() async {
        let grants = Grants()
        let buffer = MessageBuffer(capacity: 2) { grant in grants.given.withLock { $0.append(grant) } }
        async let first: AMQPMessage? = {
            var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
            return await iterator.next()
        }()
        // Delivered to the waiter once it waits (or queued until it does): either way it arrives.
        buffer.deliver(message(7))
        #expect(await first?.body == [7])
        buffer.deliver(message(8))
        buffer.finish()
        buffer.deliver(message(9))
        var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
        #expect(await iterator.next()?.body == [8])
        #expect(await iterator.next() == nil, "nothing after the end")
    }

    @Test("a cancelled consumer stops waiting")
    func cancelled() async {
        let buffer = MessageBuffer(capacity: 2) { _ in }
        let consumer = Task {
            var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
            return await iterator.next()
        }
        consumer.cancel()
        #expect(await consumer.value == nil)
    }

    @Test("an inline consumer takes each message as it is delivered, nothing waits, and credit comes back as it returns")
    func inline() {
        let grants = Grants()
        let taken = Mutex<[(body: [UInt8], grantsBefore: Int)]>([])
        let buffer = MessageBuffer(capacity: 4, consumer: .inline { message in
            taken.withLock { $0.append((message.body, grants.all.count)) }
        }) { grant in grants.given.withLock { $0.append(grant) } }
        #expect(buffer.creditForNewLink().credit == 4)
        for byte: UInt8 in 1...4 { buffer.deliver(message(byte)) }
        #expect(taken.withLock { $0.map(\.body) } == [[1], [2], [3], [4]])
        #expect(buffer.count == 0)
        #expect(grants.all == [2, 2])
        #expect(taken.withLock { $0[1].grantsBefore } == 0, "the first two messages' credit came back after the second returned")
    }

    @Test("an inline consumer's subscription yields nothing and ends with the subscription; after the end the function is neither called nor kept")
    func inlineEnd() async {
        final class Held: Sendable {}
        weak var held: Held?
        let calls = Mutex(0)
        let buffer = {
            let captured = Held()
            held = captured
            return MessageBuffer(capacity: 2, consumer: .inline { _ in
                withExtendedLifetime(captured) { calls.withLock { $0 += 1 } }
            }) { _ in }
        }()
        let waiting = Task {
            var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
            return await iterator.next()
        }
        buffer.deliver(message(1))
        #expect(calls.withLock { $0 } == 1)
        #expect(held != nil)
        buffer.finish()
        #expect(await waiting.value == nil, "the waiting sequence got nothing but its end")
        buffer.deliver(message(2))
        #expect(calls.withLock { $0 } == 1, "not called after the end")
        #expect(held == nil, "the function and what it holds are released at the end")
    }
}
