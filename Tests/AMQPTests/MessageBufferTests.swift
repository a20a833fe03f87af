import Synchronization
import Testing
@testable import AMQP

/// The credit bookkeeping between the proactor thread and a subscription's consumer, without a broker.
@Suite("Backpressure of a subscription")
struct MessageBufferTests {
    final class Grants: Sendable {
        let given = Mutex<[Int]>([])
        var all: [Int] { given.withLock { $0 } }
    }

    func message(_ byte: UInt8) -> AMQPMessage { AMQPMessage(body: [byte]) }

    @Test("credit comes back as messages are consumed, half the capacity at a time, never as they arrive")
    func grants() async {
        let grants = Grants()
        let buffer = MessageBuffer(capacity: 4) { credit in grants.given.withLock { $0.append(credit) } }
        #expect(buffer.creditForNewLink() == 4)
        for byte: UInt8 in 1...4 { buffer.deliver(message(byte)) }
        #expect(buffer.count == 4)
        #expect(grants.all.isEmpty, "arrivals grant nothing")
        var iterator = AMQPMessages(buffer: buffer).makeAsyncIterator()
        #expect(await iterator.next()?.body == [1])
        #expect(grants.all.isEmpty)
        #expect(await iterator.next()?.body == [2])
        #expect(grants.all == [2])
        // A new link (after a reconnect) starts with what the two waiting messages leave.
        #expect(buffer.creditForNewLink() == 2)
        #expect(await iterator.next()?.body == [3])
        #expect(await iterator.next()?.body == [4])
        #expect(grants.all == [2, 2])
    }

    @Test("a waiting consumer gets a message at once; the end of the subscription ends the sequence after what is left")
    func waitingAndEnd() async {
        let grants = Grants()
        let buffer = MessageBuffer(capacity: 2) { credit in grants.given.withLock { $0.append(credit) } }
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
}
