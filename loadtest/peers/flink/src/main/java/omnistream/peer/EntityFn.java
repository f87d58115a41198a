package omnistream.peer;

import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Keyed by entity ("m:" member, "s:" SKU, "c:" code): one function holding the three kinds'
 * state, as omnistream's shard holds every entity kind. Each key uses only its kind's state.
 */
public class EntityFn extends KeyedProcessFunction<String, Cmd, Out> implements CheckpointListener {
    static final AtomicLong COMMANDS = new AtomicLong();
    static final AtomicLong OUTPUTS = new AtomicLong();
    static final AtomicLong LAST_NANOS = new AtomicLong();
    static final AtomicLong CHECKPOINTS = new AtomicLong();

    private transient ValueState<State.Member> member;
    private transient ValueState<State.Code> code;
    /** Per SKU: location -> stock. */
    private transient MapState<String, State.Stock> stock;
    /** Per SKU: order id + "|" + location -> quantity reserved for that order. */
    private transient MapState<String, Long> reservations;

    private long commands;
    private long outputs;
    private long last;

    @Override
    public void open(OpenContext ctx) {
        var rc = getRuntimeContext();
        member = rc.getState(new ValueStateDescriptor<>("member", State.Member.class));
        code = rc.getState(new ValueStateDescriptor<>("code", State.Code.class));
        stock = rc.getMapState(new MapStateDescriptor<>("stock", String.class, State.Stock.class));
        reservations = rc.getMapState(new MapStateDescriptor<>("reservations", String.class, Long.class));
    }

    @Override
    public void processElement(Cmd c, Context ctx, Collector<Out> out) throws Exception {
        commands++;
        switch (c.kind) {
            case Cmd.MEMBER_TOUCH:
            case Cmd.MEMBER_POINTS:
                member(c, out);
                break;
            case Cmd.CODE_SCAN:
                scan(c, out);
                break;
            default:
                sku(c, out);
                break;
        }
        last = System.nanoTime();
    }

    private void emit(Collector<Out> out, int kind, String key, long value, long ts) {
        outputs++;
        out.collect(new Out(kind, key, value, ts));
    }

    private void member(Cmd c, Collector<Out> out) throws Exception {
        State.Member m = member.value();
        if (m == null) {
            m = new State.Member();
            m.firstSeen = c.ts;
        }
        if (c.kind == Cmd.MEMBER_POINTS) {
            m.points += c.n;
            m.pointsEvents++;
            emit(out, Out.POINTS, c.key, m.points, c.ts);
        } else {
            m.events++;
            switch (c.a) {
                case "scan": m.scans++; break;
                case "click": m.clicks++; break;
                case "order": m.orders++; break;
                case "visit": m.visits++; break;
                default: break;
            }
            m.lastSeen = Math.max(m.lastSeen, c.ts);
        }
        member.update(m);
    }

    /** First scanner wins; a later scan of the same code by another member is code reuse. */
    private void scan(Cmd c, Collector<Out> out) throws Exception {
        State.Code s = code.value();
        if (s == null) {
            s = new State.Code();
            s.firstMember = c.a;
            s.firstTs = c.ts;
            s.scans = 1;
            emit(out, Out.SCAN_ALLOW, c.key, 1, c.ts);
        } else {
            s.scans++;
            emit(out, s.firstMember.equals(c.a) ? Out.SCAN_ALLOW : Out.SCAN_DUPLICATE, c.key, s.scans, c.ts);
        }
        code.update(s);
    }

    private void sku(Cmd c, Collector<Out> out) throws Exception {
        String loc = c.b == null ? "" : c.b;
        State.Stock s = stock.get(loc);
        if (s == null) {
            s = new State.Stock();
        }
        switch (c.kind) {
            case Cmd.STOCK:
                switch (c.a) {
                    case "receive": s.onHand += c.n; break;
                    case "adjust": s.onHand += c.n; break;
                    case "set": s.onHand = c.n; break;
                    default: return;
                }
                if (c.n2 >= 0) {
                    s.safety = c.n2;
                }
                break;
            case Cmd.SKU_RESERVE: {
                // available to promise = on hand - reserved; all or nothing per line
                if (s.onHand - s.reserved < c.n) {
                    emit(out, Out.RESERVE_REFUSED, c.key, s.onHand - s.reserved, c.ts);
                    return;
                }
                s.reserved += c.n;
                reservations.put(c.c + "|" + loc, c.n);
                break;
            }
            case Cmd.SKU_COMMIT:
            case Cmd.SKU_RELEASE: {
                String r = c.c + "|" + loc;
                Long q = reservations.get(r);
                if (q == null) {
                    return; // refused at placement: nothing held
                }
                reservations.remove(r);
                s.reserved -= q;
                if (c.kind == Cmd.SKU_COMMIT) {
                    s.onHand -= q;
                }
                break;
            }
            default:
                return;
        }
        stock.put(loc, s);
        long atp = s.onHand - s.reserved;
        emit(out, atp <= s.safety ? Out.STOCK_LOW : Out.STOCK_CHANGED, c.key, atp, c.ts);
    }

    @Override
    public void notifyCheckpointComplete(long id) {
        if (getRuntimeContext().getTaskInfo().getIndexOfThisSubtask() == 0) {
            CHECKPOINTS.incrementAndGet();
        }
    }

    @Override
    public void close() {
        COMMANDS.addAndGet(commands);
        OUTPUTS.addAndGet(outputs);
        LAST_NANOS.accumulateAndGet(last, Math::max);
    }
}
