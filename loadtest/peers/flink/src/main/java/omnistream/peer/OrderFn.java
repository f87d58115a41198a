package omnistream.peer;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Keyed by order (channel/order id): keeps the lines as placed, and turns each status into
 * commands to the SKUs (reserve on placed, commit on fulfilled, release on cancelled) and to
 * the member (points on fulfilled: per line qty x unit price / 100 fen, rounded down; the
 * default rules of omnistream, without channel or SKU multipliers).
 */
public class OrderFn extends KeyedProcessFunction<String, Cmd, Cmd> {
    static final long FEN_PER_POINT = 100;

    private transient ValueState<State.Order> order;

    @Override
    public void open(OpenContext ctx) {
        order = getRuntimeContext().getState(new ValueStateDescriptor<>("order", State.Order.class));
    }

    @Override
    public void processElement(Cmd c, Context ctx, Collector<Cmd> out) throws Exception {
        State.Order o = order.value();
        String id = c.key;
        switch (c.a) {
            case "placed":
                if (o != null || c.skus == null) {
                    return; // placed twice, or without lines: ignored
                }
                o = new State.Order();
                o.status = "placed";
                o.location = c.b;
                o.member = c.c;
                o.skus = c.skus;
                o.qtys = c.qtys;
                o.prices = c.prices;
                lines(o, Cmd.SKU_RESERVE, id, c.ts, out);
                break;
            case "fulfilled":
                if (o == null || !open(o)) {
                    return;
                }
                o.status = "fulfilled";
                lines(o, Cmd.SKU_COMMIT, id, c.ts, out);
                if (o.member != null) {
                    long points = 0;
                    for (int i = 0; i < o.skus.length; i++) {
                        points += o.qtys[i] * o.prices[i] / FEN_PER_POINT;
                    }
                    Cmd p = Cmd.of(Cmd.MEMBER_POINTS, o.member, c.ts);
                    p.n = points;
                    p.b = id;
                    out.collect(p);
                }
                break;
            case "cancelled":
                if (o == null || !open(o)) {
                    return;
                }
                o.status = "cancelled";
                lines(o, Cmd.SKU_RELEASE, id, c.ts, out);
                break;
            default:
                // paid, returned: recorded only
                if (o == null) {
                    return;
                }
                o.status = c.a;
                break;
        }
        order.update(o);
    }

    static boolean open(State.Order o) {
        return o.status.equals("placed") || o.status.equals("paid");
    }

    static void lines(State.Order o, int kind, String order, long ts, Collector<Cmd> out) {
        for (int i = 0; i < o.skus.length; i++) {
            Cmd s = Cmd.of(kind, "s:" + o.skus[i], ts);
            s.b = o.location;
            s.c = order;
            s.n = o.qtys[i];
            out.collect(s);
        }
    }
}
