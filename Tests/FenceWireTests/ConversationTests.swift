import Testing
@testable import FenceWire

@Suite("The daemon's side of a conversation")
struct ConversationTests {
    static let key = FenceKey(fileContents: Array("conversation-test-key".utf8))
    let exchange = ChallengeResponse(key: ConversationTests.key, algorithm: .sha256)
    let tag = ChallengeTag(key: ConversationTests.key)
    let random = [UInt8](repeating: 5, count: ChallengeTag.randomLength)

    func conversation(_ kind: Conversation.Kind = .callback, auth: HashAlgorithm = .sha256) -> Conversation {
        Conversation(kind: kind, exchange: ChallengeResponse(key: Self.key, algorithm: auth), tag: tag, random: random)
    }

    /// Plays an honest client: our challenge, then the answer to the daemon's.
    func honestClient(_ conversation: inout Conversation, challenge: [UInt8]) -> (sent: [UInt8], events: [Conversation.Event]) {
        var events = conversation.receive(challenge)
        guard case .send(let reply)? = events.first, reply.count == 128 else { return ([], events) }
        #expect(exchange.isValid(response: Array(reply.prefix(64)), to: challenge), "the daemon proves the key")
        events = conversation.receive(exchange.response(to: Array(reply.suffix(64))))
        return (reply, events)
    }

    @Test("an honest client: our answer and our tagged challenge in one write, then authenticated")
    func honest() {
        var c = conversation()
        #expect(c.start().isEmpty)
        let challenge = (0..<64).map { UInt8($0) }
        let (sent, events) = honestClient(&c, challenge: challenge)
        #expect(tag.isIssued(Array(sent.suffix(64))), "our challenge carries the tag")
        #expect(events == [.authenticated])
        #expect(c.isAuthenticated)
    }

    @Test("bytes arriving one at a time make the same conversation")
    func fragmented() {
        var c = conversation()
        let challenge = (0..<64).map { UInt8(255 - $0) }
        var events: [Conversation.Event] = []
        for byte in challenge { events += c.receive([byte]) }
        guard case .send(let reply)? = events.first else {
            Issue.record("no reply: \(events)")
            return
        }
        events = []
        for byte in exchange.response(to: Array(reply.suffix(64))) { events += c.receive([byte]) }
        #expect(events == [.authenticated])
    }

    @Test("a challenge that a daemon issued is refused without an answer (reflection)")
    func reflection() {
        var issuer = conversation()
        let (sent, _) = honestClient(&issuer, challenge: [UInt8](repeating: 1, count: 64))
        var other = Conversation(kind: .callback, exchange: exchange, tag: ChallengeTag(key: Self.key), random: [UInt8](repeating: 8, count: 48))
        #expect(other.receive(Array(sent.suffix(64))) == [.refused(.reflectedChallenge)])
        #expect(other.isRefused)
        #expect(other.receive([UInt8](repeating: 0, count: 64)).isEmpty, "a refused conversation stays refused")
    }

    @Test("another key's tag is not ours; random challenges are not tagged")
    func tags() {
        let ours = tag.challenge(random: random)
        #expect(tag.isIssued(ours))
        #expect(!ChallengeTag(key: FenceKey(fileContents: Array("other".utf8))).isIssued(ours))
        #expect(!tag.isIssued((0..<64).map { UInt8($0) }))
        var flipped = ours
        flipped[0] ^= 1
        #expect(!tag.isIssued(flipped))
    }

    @Test("a wrong answer to our challenge is refused")
    func wrongResponse() {
        var c = conversation()
        _ = c.receive([UInt8](repeating: 3, count: 64))
        #expect(c.receive([UInt8](repeating: 0, count: 64)) == [.refused(.wrongResponse)])
    }

    @Test("more bytes than the protocol allows at any point are refused at once", arguments: [65, 128, 4096])
    func excess(count: Int) {
        var c = conversation()
        #expect(c.receive([UInt8](repeating: 3, count: count)) == [.refused(.excessData)])
    }

    @Test("a byte after authentication is refused: the client only waits for its result")
    func chatterAfterAuthentication() {
        var c = conversation()
        _ = honestClient(&c, challenge: [UInt8](repeating: 4, count: 64))
        #expect(c.receive([0]) == [.refused(.excessData)])
    }

    @Test("a stream: the request first, and nothing answered until the caller accepts it")
    func stream() {
        var c = conversation(.stream)
        let request = [UInt8](repeating: 1, count: 176)
        let challenge = [UInt8](repeating: 2, count: 64)
        #expect(c.receive(request + challenge) == [.request(request)], "the client's challenge waits for the request's checks")
        let events = c.requestAccepted()
        guard case .send(let reply)? = events.first else {
            Issue.record("no reply: \(events)")
            return
        }
        #expect(c.receive(exchange.response(to: Array(reply.suffix(64)))) == [.authenticated])
    }

    @Test("a stream that sends more than a request and a challenge is refused before the request is looked at")
    func streamExcess() {
        var c = conversation(.stream)
        #expect(c.receive([UInt8](repeating: 1, count: 176 + 65)) == [.refused(.excessData)])
    }

    @Test("auth none: a call-back is authenticated at once, a stream once its request is accepted; neither takes more bytes")
    func authNone() {
        var callback = conversation(auth: .none)
        #expect(callback.start() == [.authenticated])
        #expect(callback.receive([1]) == [.refused(.excessData)])
        var stream = conversation(.stream, auth: .none)
        let request = [UInt8](repeating: 1, count: 176)
        #expect(stream.receive(request) == [.request(request)])
        #expect(stream.requestAccepted() == [.authenticated])
    }
}
