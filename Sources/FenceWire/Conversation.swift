import Cryptography

/// The daemon's challenges carry a tag that every daemon holding the key recognises: a challenge
/// that a daemon issued, put back to a daemon as a client's challenge, is refused. Without this a
/// peer with two call-backs gets the answer to one conversation's challenge from the other
/// (reflection), also across several routers that share the key.
///
/// A challenge is 48 random bytes and the first 16 bytes of SHA-256(tag key ‖ those 48 bytes), the
/// tag key derived from the guests' key (a fixed-length input under a secret prefix: no length
/// extension applies); a client's 64 random bytes pass as a tag with probability 2⁻¹²⁸.
public struct ChallengeTag: Sendable {
    /// The tag key absorbed once, as the packet signatures do.
    private let digest: KeyedDigest

    public init(key: FenceKey) {
        digest = KeyedDigest(.sha256, key: Digest.hash(.sha256, Array("fence-router challenge tag".utf8), key.bytes))
    }

    public static let randomLength = ChallengeResponse.length - 16

    /// Our challenge from 48 random bytes.
    public func challenge(random: [UInt8]) -> [UInt8] {
        precondition(random.count == Self.randomLength, "a challenge takes 48 random bytes")
        return random + tag(random)
    }

    /// Whether `challenge` is one a daemon with this key issued.
    public func isIssued(_ challenge: [UInt8]) -> Bool {
        guard challenge.count == ChallengeResponse.length else { return false }
        return ConstantTime.equals(tag(Array(challenge.prefix(Self.randomLength))), Array(challenge.suffix(16)))
    }

    private func tag(_ random: [UInt8]) -> [UInt8] {
        Array(digest.hash(random).prefix(16))
    }
}

/// The daemon's side of one conversation with a fence_xvm client, without I/O: fed the bytes the
/// client sends, it says what to send back and when the client has proven the key.
///
/// A call-back conversation starts at the client's challenge; a stream (`fence_virt -T`) starts
/// with the request itself, which the caller checks before the exchange goes on. The client's
/// order is fixed by the protocol: its challenge C1 first, our answer and our challenge C2, its
/// answer. Nothing is buffered beyond what the protocol lets a client send before it must wait
/// for us, so a peer that sends more is refused at once.
public struct Conversation: Sendable {
    public enum Kind: Sendable {
        /// We called the client back after its datagram.
        case callback
        /// The client connected and sends its request on the stream.
        case stream
    }

    /// Why a conversation ended without an authenticated client.
    public enum Refusal: String, Error, Sendable, CustomStringConvertible {
        /// The client's challenge is one a daemon issued: a reflection.
        case reflectedChallenge = "reflected-challenge"
        /// The client's answer to our challenge is wrong.
        case wrongResponse = "wrong-response"
        /// The client sent more than the protocol allows at this point.
        case excessData = "excess-data"

        public var description: String { rawValue }
    }

    public enum Event: Equatable, Sendable {
        /// Send these bytes to the client.
        case send([UInt8])
        /// A stream's 176-byte request arrived; call `requestAccepted()` to go on, or close.
        case request([UInt8])
        /// The client proved it holds the key (or `auth` is none): the request may run.
        case authenticated
        case refused(Refusal)
    }

    private enum State: Sendable {
        case awaitingRequest
        case requestPending
        case awaitingChallenge
        case awaitingResponse(ours: [UInt8])
        case authenticated
        case refused
    }

    private let exchange: ChallengeResponse
    private let tag: ChallengeTag
    private let ourChallenge: [UInt8]
    private var state: State
    private var buffer: [UInt8] = []

    /// - Parameter ourChallenge: 48 random bytes; the tag is added here.
    public init(kind: Kind, exchange: ChallengeResponse, tag: ChallengeTag, random ourChallenge: [UInt8]) {
        self.exchange = exchange
        self.tag = tag
        self.ourChallenge = tag.challenge(random: ourChallenge)
        state = kind == .stream ? .awaitingRequest : .awaitingChallenge
    }

    /// The events due before the client sends anything: with `auth` none a call-back is
    /// authenticated at once.
    public mutating func start() -> [Event] {
        guard case .awaitingChallenge = state, exchange.algorithm == .none else { return [] }
        state = .authenticated
        return [.authenticated]
    }

    public var isAuthenticated: Bool {
        if case .authenticated = state { return true }
        return false
    }

    public var isRefused: Bool {
        if case .refused = state { return true }
        return false
    }

    /// Feeds bytes from the client.
    public mutating func receive(_ bytes: some Collection<UInt8>) -> [Event] {
        if case .refused = state { return [] }
        // Through contiguous storage where there is one: the generic append, unspecialised
        // across modules, took longer than the rest of the step.
        if bytes.withContiguousStorageIfAvailable({ buffer.append(contentsOf: $0) }) == nil {
            buffer.append(contentsOf: bytes)
        }
        return advance()
    }

    /// The caller checked the stream's request and goes on with the exchange.
    public mutating func requestAccepted() -> [Event] {
        guard case .requestPending = state else { return [] }
        state = .awaitingChallenge
        if exchange.algorithm == .none {
            state = .authenticated
            return [.authenticated] + advance()
        }
        return advance()
    }

    /// How many bytes the client may have sent, unanswered, in the current state.
    private var allowance: Int {
        let auth = exchange.algorithm == .none ? 0 : ChallengeResponse.length
        switch state {
        case .awaitingRequest: return FenceRequest.length + auth
        case .requestPending, .awaitingChallenge, .awaitingResponse: return exchange.algorithm == .none ? 0 : ChallengeResponse.length
        case .authenticated, .refused: return 0
        }
    }

    private mutating func advance() -> [Event] {
        var events: [Event] = []
        while true {
            guard buffer.count <= allowance else { return events + refuse(.excessData) }
            switch state {
            case .awaitingRequest:
                guard buffer.count >= FenceRequest.length else { return events }
                let request = Array(buffer.prefix(FenceRequest.length))
                buffer.removeFirst(FenceRequest.length)
                state = .requestPending
                events.append(.request(request))
            case .awaitingChallenge:
                guard buffer.count >= ChallengeResponse.length else { return events }
                let challenge = take()
                guard !tag.isIssued(challenge) else { return events + refuse(.reflectedChallenge) }
                state = .awaitingResponse(ours: ourChallenge)
                events.append(.send(exchange.response(to: challenge) + ourChallenge))
            case .awaitingResponse(let ours):
                guard buffer.count >= ChallengeResponse.length else { return events }
                guard exchange.isValid(response: take(), to: ours) else { return events + refuse(.wrongResponse) }
                state = .authenticated
                events.append(.authenticated)
            case .requestPending, .authenticated, .refused:
                return events
            }
        }
    }

    private mutating func take() -> [UInt8] {
        let chunk = Array(buffer.prefix(ChallengeResponse.length))
        buffer.removeFirst(ChallengeResponse.length)
        return chunk
    }

    private mutating func refuse(_ refusal: Refusal) -> [Event] {
        state = .refused
        buffer = []
        return [.refused(refusal)]
    }
}
