#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceConfig
import FenceWire
import Logging
import RequestThreads
import ServiceLifecycle
import Synchronization

/// Receives fence_xvm's signed multicast datagrams (IPv4 or IPv6) and hands each new request to the
/// pipeline, which calls the client back. With `interface` set, only datagrams that arrived on that
/// interface are accepted (checked per packet; the reference accepts them from anywhere).
///
/// A request thread waits for the next datagram; when one brings a new request, that thread
/// serves it and another takes over the waiting. The request meets no thread hand-over before
/// its call-back leaves.
public final class MulticastListener: Service {
    public let name: String
    private let socket: MulticastSocket
    private let interfaceIndex: Int?
    private let credentials: CurrentCredentials
    private let pipeline: RequestPipeline
    private let logger: Logger
    private let stopping = Atomic(false)

    /// The interface index of the `interface` setting; nil when none is set. Checked for every
    /// listener before any is bound.
    public static func interfaceIndex(of settings: MulticastListenerSettings) throws -> Int? {
        guard let interface = settings.interface else { return nil }
        let index = if_nametoindex(interface)
        guard index != 0 else {
            let place = settings.interfaceLocation.map { " (\($0))" } ?? ""
            throw ListenerError(code: .noSuchInterface, message: "multicast listener: there is no interface named \"\(interface)\"\(place)")
        }
        return Int(index)
    }

    /// Binds the socket and joins the group, so that a daemon reports ready only once it can receive.
    public static func bind(
        settings: MulticastListenerSettings,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        logger: Logger
    ) throws -> MulticastListener {
        let name = "multicast \(settings.group) port \(settings.port)\(settings.interface.map { " on \($0)" } ?? "")"
        let interfaceIndex = try interfaceIndex(of: settings)
        let socket: MulticastSocket
        do {
            socket = try MulticastSocket(group: settings.group, port: settings.port, interfaceIndex: interfaceIndex ?? 0)
        } catch {
            let message = switch error.code {
            case .joinFailed: "\(name): cannot join the group: \(error) (is there a route for the group, or an interface set?)"
            default: "\(name): cannot bind UDP port \(settings.port): \(error)"
            }
            throw ListenerError(code: error.code, message: message)
        }
        return MulticastListener(name: name, socket: socket, interfaceIndex: interfaceIndex, credentials: credentials, pipeline: pipeline, logger: logger)
    }

    private init(
        name: String,
        socket: MulticastSocket,
        interfaceIndex: Int?,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        logger: Logger
    ) {
        self.name = name
        self.socket = socket
        self.interfaceIndex = interfaceIndex
        self.credentials = CurrentCredentials(credentials)
        self.pipeline = pipeline
        self.logger = logger
    }

    /// The UDP port it listens on.
    var port: UInt16 { socket.port }

    /// Stops a listener that will never run (another part failed to start); its socket is
    /// released with it.
    public func close() async {
        socket.stop()
    }

    /// A reloaded key and digests, for requests received from now on.
    public func update(credentials: ListenerCredentials) {
        self.credentials.value = credentials
    }

    /// How a receiving thread's turn ended.
    private enum Turn {
        /// It serves the request it admitted; the next thread receives (nil: the system refused
        /// one, ask again).
        case handedOver(to: RequestThread?)
        case stopped
        case failed(ListenerError)
    }

    /// Serves until graceful shutdown or cancellation, then lets requests under way finish (each
    /// within its deadline).
    public func run() async throws {
        logger.info("listening", metadata: ["listener": "\(name)"])
        let failure: ListenerError? = await withTaskCancellationOrGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                // Between turns the loop runs where `receiving` points: the next thread, so that it
                // goes there straight from the thread that admitted a request (and now serves it).
                let receiving = MovingExecutor(nil)
                return await withTaskExecutorPreference(receiving) { () async -> ListenerError? in
                    var refused = false
                    var next: RequestThread?
                    while true {
                        guard let thread = next ?? pipeline.threads.take() else {
                            // The system refuses a thread: datagrams wait in the socket's buffer.
                            if !refused {
                                logger.error("the system refuses a thread to receive on; trying again every 100 ms", metadata: ["listener": "\(name)"])
                                refused = true
                            }
                            guard !stopping.load(ordering: .relaxed), (try? await Task.sleep(for: .milliseconds(100))) != nil else { return nil }
                            continue
                        }
                        refused = false
                        next = nil
                        // The thread that waits; it serves what it admits, and the next one waits.
                        let turn: Turn = await withTaskExecutorPreference(thread) {
                            // The next thread is ready before this one waits: a thread made on
                            // demand is not made while an admitted request waits for this one.
                            let following = pipeline.threads.take()
                            func leave(_ turn: Turn) -> Turn {
                                receiving.move(to: nil)
                                if let following { pipeline.threads.giveBack(following) }
                                return turn
                            }
                            while true {
                                let datagram: MulticastSocket.Datagram?
                                do throws(ListenerError) {
                                    datagram = try socket.receive()
                                } catch {
                                    return leave(.failed(error))
                                }
                                guard let datagram else { return leave(.stopped) }
                                // What is dropped costs no thread hand-over: this thread reads on.
                                guard let admitted = admit(datagram) else { continue }
                                switch pipeline.startCallBack(admitted) {
                                case .none:
                                    continue
                                case .afterSourceMatchWait:
                                    // Waits without holding a thread.
                                    group.addTask(executorPreference: globalConcurrentExecutor) {
                                        await self.pipeline.serveDatagram(admitted, start: .afterSourceMatchWait)
                                    }
                                    continue
                                case .dialling(let candidates, let first):
                                    // Its SYN has left; the rest is queued on this thread, which runs
                                    // it as soon as the loop has left for the next thread (or for
                                    // the global executor, when the system refused one).
                                    group.addTask(executorPreference: thread) {
                                        await thread.hosting { await self.pipeline.callBack(admitted, candidates: candidates, first: first) }
                                        self.pipeline.threads.giveBack(thread)
                                    }
                                    receiving.move(to: following)
                                    return .handedOver(to: following)
                                }
                            }
                        }
                        switch turn {
                        case .handedOver(let following):
                            next = following
                        case .stopped:
                            pipeline.threads.giveBack(thread)
                            return nil
                        case .failed(let error):
                            pipeline.threads.giveBack(thread)
                            return error
                        }
                    }
                }
            }
        } onCancelOrGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            self.socket.stop()
        }
        if let failure {
            logger.error("receive failed", metadata: ["listener": "\(name)", "error": "\(failure)"])
            throw failure
        }
        logger.info("stopped", metadata: ["listener": "\(name)"])
    }

    private func admit(_ datagram: MulticastSocket.Datagram) -> AdmittedRequest? {
        let source = datagram.source?.description ?? "?"
        if let interfaceIndex, datagram.interfaceIndex != interfaceIndex {
            let arrived = datagram.interfaceIndex.map { "arrived on interface index \($0)" } ?? "arrived without its interface (no packet information)"
            pipeline.drop(.wrongInterface, arrived, source: source, listener: name)
            return nil
        }
        return pipeline.admit(datagram: datagram.bytes, source: source, listener: name, credentials: credentials.value, arrival: datagram.arrival)
    }
}
